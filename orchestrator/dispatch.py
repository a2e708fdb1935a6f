"""Jobs: built next to their task rows (outbox), published to ``stone.<Name>`` after commit."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery

from orchestrator.celery_app import JOB_TASK
from orchestrator.jobguard import RedisJobGuard
from orchestrator.worker import job_repr

log = logging.getLogger(__name__)


def queue_for(stone: str) -> str:
    return f"stone.{stone}"


def job_for(*, process_pk: int, task_pk: int, task_uuid: str, attempt: int, stone: str, event: str,
            name: str, namespace: str | None, params: dict[str, Any], state: dict[str, Any] | None = None,
            properties: dict[str, str] | None = None, generation: int = 1,
            countdown: float | None = None) -> dict[str, Any]:
    """The message a worker receives. Self-contained: workers never read the database."""
    props = properties or {}
    job: dict[str, Any] = {
        "process": process_pk, "task": task_pk, "attempt": attempt, "stone": stone, "event": event,
        "name": name, "namespace": namespace, "params": params, "state": state or {},
        # Deterministic: a duplicate delivery, a re-dispatch or a retry hands the provider the same key.
        "key": f"{task_uuid}-{generation}",
    }
    for prop, field, kind in _PROPERTIES:
        if prop in props:
            job[field] = kind(props[prop])
    if countdown:
        job["countdown"] = countdown
    return job


# BPMN properties of a service task that tune its job: (property, job field, type).
_PROPERTIES = (("monitorInterval", "interval", float), ("monitorDeadline", "deadline_s", float),
               ("retryAttempts", "retry_attempts", int), ("retryBackoff", "retry_backoff", float))


class Dispatcher:
    """Publishes jobs over one reused producer connection; revokes tasks that must not start."""

    def __init__(self, app: Celery, guard: RedisJobGuard | None = None):
        self.app = app
        self.guard = guard or RedisJobGuard(app.conf.orchestrator_settings.redis_url)

    def revoke(self, task_pks: list[int]) -> None:
        self.guard.revoke(task_pks)

    # Published jobs whose bookkeeping (outbox row gone, ``produce.success``) the engine does in
    # its own batches: the API hands them over here instead of paying a transaction per request.
    PRODUCED_KEY = "orch:produced"

    def hand_over_produced(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            self.guard.client.rpush(self.PRODUCED_KEY, json.dumps(pairs))

    def take_produced(self, limit: int = 1000) -> list[tuple[int, int]]:
        pipe = self.guard.client.pipeline(transaction=True)
        pipe.lrange(self.PRODUCED_KEY, 0, limit - 1)
        pipe.ltrim(self.PRODUCED_KEY, limit, -1)
        chunks, _ = pipe.execute()
        return [(int(o), int(t)) for chunk in chunks for o, t in json.loads(chunk)]

    def publish(self, jobs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """Publish every job; return ``(job, reason)`` for those the broker refused."""
        failed: list[tuple[dict[str, Any], str]] = []
        if not jobs:
            return failed
        with self.app.producer_or_acquire() as producer:
            for job in jobs:
                try:
                    self.app.send_task(JOB_TASK, kwargs={"job": job}, queue=queue_for(job["stone"]),
                                       producer=producer, kwargsrepr=job_repr(job),
                                       countdown=job.get("countdown"))
                except Exception as exc:  # broker down, connection reset: the outbox keeps the job
                    log.warning("publishing task %s failed: %s", job["task"], exc)
                    failed.append((job, f"{type(exc).__name__}: {exc}"))
        return failed
