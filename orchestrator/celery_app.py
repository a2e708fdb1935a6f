"""The Celery application shared by publishers (api, engine) and workers.

JSON only, late acknowledgement, re-delivery when a worker dies, one message prefetched
per process on the stone queues: a job is a wake-up, the database keeps the truth.
"""

from __future__ import annotations

from celery import Celery

from orchestrator.config import Settings

JOB_TASK = "orchestrator.stone_event"
# Kept below the broker's visibility timeout, else Redis re-delivers a job still waiting.
VISIBILITY_TIMEOUT_S = 3600
MAX_COUNTDOWN_S = 600


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("orchestrator", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="orchestrator",
        task_create_missing_queues=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    app.conf.orchestrator_settings = settings
    from orchestrator import worker  # registers the job task on this app

    worker.register(app)
    return app
