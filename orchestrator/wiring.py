"""Assembling the parts from settings (the one place that knows every concrete class)."""

from __future__ import annotations

import redis

from orchestrator.celery_app import make_celery
from orchestrator.config import Settings
from orchestrator.consumer import EngineLoop, consumer_name
from orchestrator.dispatch import Dispatcher
from orchestrator.service import Service
from orchestrator.status import StatusStream
from orchestrator.store import Store


def build_service(settings: Settings, store: Store | None = None, marks: str = "now") -> Service:
    store = store or Store(settings.database_url)
    return Service(store, Dispatcher(make_celery(settings)), settings, marks=marks)


def build_engine_loop(settings: Settings, service: Service | None = None, consumer: str | None = None) -> EngineLoop:
    service = service or build_service(settings)
    stream = StatusStream(redis.Redis.from_url(settings.redis_url), settings.status_stream,
                          settings.status_group, consumer or consumer_name())
    return EngineLoop(service, stream, batch=settings.engine_batch, block_ms=settings.engine_block_ms,
                      claim_idle_s=settings.engine_claim_idle_s)
