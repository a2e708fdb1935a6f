"""The raw Celery baseline: the benchmark's DAG (five no-op tasks in sequence) as a plain chain.

Configured like the orchestrator's Celery app (``orchestrator/celery_app.py``): JSON, late
acknowledgement, one message prefetched per process, no result backend. The last task of
each chain increments a Redis counter, which the benchmark polls.

Broker: ``BENCH_RAW_REDIS_URL`` (set by ``bench.run`` for its worker subprocess).
Worker: ``python -m celery -A bench.raw_celery worker -Q bench.raw ...``.
"""

from __future__ import annotations

import os

import redis
from celery import Celery, chain

QUEUE = "bench.raw"
DONE_KEY = "bench:raw:done"
VISIBILITY_TIMEOUT_S = 3600

REDIS_URL = os.environ.get("BENCH_RAW_REDIS_URL", "redis://127.0.0.1:6379/14")

app = Celery("bench_raw", broker=REDIS_URL, set_as_current=False)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    task_create_missing_queues=True,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    worker_send_task_events=True,  # as the orchestrator's workers (Flower)
    task_send_sent_event=False,
    worker_hijack_root_logger=False,
)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client  # one client per worker process, made after the fork
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    return _client


@app.task(name="bench.noop", acks_late=True)
def noop(i: int) -> None:
    return None


@app.task(name="bench.done", acks_late=True)
def done(i: int) -> None:
    _redis().incr(DONE_KEY)


def five_step_chain(i: int):
    """The benchmark DAG: four no-ops, then a no-op that counts the chain as done."""
    return chain(noop.si(i), noop.si(i), noop.si(i), noop.si(i), done.si(i))
