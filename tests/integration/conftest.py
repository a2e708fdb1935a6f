from __future__ import annotations

import base64
import json

import pytest

from orchestrator.celery_app import make_celery
from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher
from orchestrator.service import Service


@pytest.fixture
def settings(db_url, redis_url) -> Settings:
    return Settings(database_url=db_url, redis_url=redis_url)


@pytest.fixture
def service(store, settings, redis_client) -> Service:
    """The real service: real database, jobs published to the real Redis."""
    return Service(store, Dispatcher(make_celery(settings)), settings)


def queued_jobs(redis_client, stone: str) -> list[dict]:
    """The jobs waiting in a stone's Celery queue (kombu keeps a Redis list per queue)."""
    jobs = []
    for raw in redis_client.lrange(f"stone.{stone}", 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        jobs.append(body[1]["job"])
    return jobs
