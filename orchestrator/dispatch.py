"""Jobs: built next to their task rows (outbox), published to ``stone.<Name>`` after commit."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from orchestrator.celery_app import JOB_TASK
from orchestrator.worker import job_repr

log = logging.getLogger(__name__)


def queue_for(stone: str) -> str:
    return f"stone.{stone}"


def job_for(*, process_pk: int, task_pk: int, task_uuid: str, attempt: int, stone: str, event: str,
            name: str, namespace: str | None, params: dict[str, Any], state: dict[str, Any] | None = None,
            properties: dict[str, str] | None = None) -> dict[str, Any]:
    """The message a worker receives. Self-contained: workers never read the database."""
    props = properties or {}
    job: dict[str, Any] = {
        "process": process_pk, "task": task_pk, "attempt": attempt, "stone": stone, "event": event,
        "name": name, "namespace": namespace, "params": params, "state": state or {},
        # Deterministic: a duplicate delivery of the same attempt hands the provider the same key.
        "key": f"{task_uuid}-{attempt}",
    }
    if "monitorInterval" in props:
        job["interval"] = float(props["monitorInterval"])
    if "monitorDeadline" in props:
        job["deadline_s"] = float(props["monitorDeadline"])
    return job


class Dispatcher:
    """Publishes jobs over one reused producer connection."""

    def __init__(self, app: Celery):
        self.app = app

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
