"""What a Celery worker does with a job: run one stone event and report every step.

A job is a dict built by ``dispatch.job_for``. The worker never touches SQL; it reports
to the status stream and, for a pending monitor, re-enqueues the next poll with a
countdown (never a sleep inside a job). Retries follow the stone's ``RetryPolicy``: a
retryable start failure is reported with ``retry_in`` and the engine schedules the next
attempt; a retryable monitor error re-polls after the same backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from orchestrator.celery_app import JOB_TASK, MAX_COUNTDOWN_S
from orchestrator.jobguard import JobGuard, RedisJobGuard
from orchestrator.masking import mask
from orchestrator.states import TaskStatus as S
from orchestrator.status import StatusReport, StatusReporter
from stones.base import Done, Failed, Pending, RetryableError, RetryPolicy, Stone, StoneContext, StoneError
from stones.registry import get_stone

log = logging.getLogger(__name__)

Requeue = Callable[[dict[str, Any], float], None]
BUSY_RETRY_S = 2.0


def backoff(policy: RetryPolicy, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, capped, with jitter."""
    delay = min(policy.max_backoff_s, policy.backoff_s * (2 ** max(0, attempt - 1)))
    return round(delay * (0.5 + rng()) if policy.jitter else delay, 3)


def policy_for(stone: type[Stone], job: dict[str, Any]) -> RetryPolicy:
    policy = stone.retry
    if "retry_attempts" in job or "retry_backoff" in job:
        policy = RetryPolicy(attempts=int(job.get("retry_attempts", policy.attempts)),
                             backoff_s=float(job.get("retry_backoff", policy.backoff_s)),
                             max_backoff_s=policy.max_backoff_s, jitter=policy.jitter)
    return policy


class JobRunner:
    def __init__(self, reporter: StatusReporter, requeue: Requeue, guard: JobGuard,
                 clock: Callable[[], float] = time.time,
                 resolve: Callable[[str], type[Stone]] = get_stone, lock_ttl_s: float = 300.0):
        # The run lock lives as long as the task's lease: when a killed worker's lock lapses,
        # the reconciler's re-sent job may run.
        self.lock_ttl_s = lock_ttl_s
        self.reporter = reporter
        self.requeue = requeue
        self.guard = guard
        self.clock = clock
        self.resolve = resolve
        self._pending: list[StatusReport] = []

    def run(self, job: dict[str, Any]) -> None:
        refused = self.guard.begin(job, self.lock_ttl_s)
        if refused == "busy" and job["event"] in ("rollback", "delete", "cancel"):
            # The work it undoes is still running: undo it once that job is over.
            self.requeue(job, BUSY_RETRY_S)
            return
        if refused is not None:
            # revoked: the task was canceled; busy: another copy of this job runs right now.
            log.info("%s job of task %s dropped: %s", job["event"], job["task"], refused)
            return
        try:
            self._run(job)
        finally:
            self._flush()
            self.guard.release(job)

    def _run(self, job: dict[str, Any]) -> None:
        event = job["event"]
        try:
            stone_cls = self.resolve(job["stone"])
        except KeyError as exc:
            status = f"{'start' if event == 'monitor' else event}.failed"
            self._report(job, status, reason=str(exc.args[0]) if exc.args else str(exc))
            return
        stone = stone_cls()
        ctx = StoneContext(
            task_id=str(job["task"]), process_instance_id=str(job["process"]), name=job["name"],
            namespace=job.get("namespace"), params=job.get("params") or {}, attempt=job["attempt"],
            idempotency_key=job["key"], state=job.get("state") or {}, poll=job.get("poll", 0),
            log=logging.getLogger(f"stones.{stone_cls.name}"))
        if event == "start":
            self._start(stone, ctx, job)
        elif event == "monitor":
            self._monitor(stone, ctx, job)
        elif event == "mock":
            self._mock(stone, ctx, job)
        elif event in ("rollback", "delete", "cancel"):
            self._simple(stone, ctx, job, event)
        else:
            self._report(job, S.START_FAILED, reason=f"unknown event {event!r}")

    # -- events

    def _start(self, stone: Stone, ctx: StoneContext, job: dict[str, Any]) -> None:
        # Sent at once: it marks the moment a worker took the task (dispatch latency).
        self.reporter.send(self._make(job, S.START_BEGIN))
        try:
            state = stone.start(ctx) or {}
        except Exception as exc:  # a stone's bug is a terminal failure of its task
            self._failed(stone, job, S.START_FAILED, exc)
            return
        ctx.state = dict(state)
        self._report(job, S.START_SUCCESS, state=ctx.state)
        interval = float(job.get("interval") or stone.monitor_interval_s)
        deadline_s = float(job.get("deadline_s") or stone.monitor_deadline_s)
        job = {**job, "event": "monitor", "state": ctx.state, "poll": 0,
               "interval": interval, "deadline": self.clock() + deadline_s}
        self._report(job, S.MONITOR_BEGIN, progress=0)
        self._monitor(stone, ctx, job)

    def _monitor(self, stone: Stone, ctx: StoneContext, job: dict[str, Any]) -> None:
        if job.get("deadline") is None:  # re-sent by the reconciler: a fresh deadline
            job = {**job, "deadline": self.clock() + float(job.get("deadline_s") or stone.monitor_deadline_s)}
        try:
            result = stone.monitor(ctx)
        except RetryableError as exc:
            errors = int(job.get("errors", 0)) + 1
            policy = policy_for(type(stone), job)
            if errors < max(policy.attempts, 1) and not self._past_deadline(job):
                delay = backoff(policy, errors)
                self._report(job, S.MONITOR_BEGIN, reason=f"poll failed ({errors}/{policy.attempts}), "
                                                          f"retrying in {delay:g}s: {exc.reason}")
                self.requeue({**job, "poll": job.get("poll", 0) + 1, "errors": errors}, delay)
                return
            self._report(job, S.MONITOR_FAILED, reason=_reason(exc), code=exc.code)
            return
        except Exception as exc:
            self._report(job, S.MONITOR_FAILED, reason=_reason(exc), code=getattr(exc, "code", None))
            return
        if isinstance(result, Done):
            self._report(job, S.MONITOR_SUCCESS, outputs=result.outputs, progress="100")
        elif isinstance(result, Failed):
            self._report(job, S.MONITOR_FAILED, reason=result.reason, code=result.code)
        elif isinstance(result, Pending):
            if self._past_deadline(job):
                self._report(job, S.MONITOR_FAILED,
                             reason=f"monitor deadline passed: still pending after {job.get('poll', 0) + 1} "
                                    f"polls (last progress {result.progress!r})")
                return
            state = result.state if result.state is not None else ctx.state
            self._report(job, S.MONITOR_BEGIN, progress=result.progress, state=result.state)
            interval = min(float(job.get("interval") or stone.monitor_interval_s), MAX_COUNTDOWN_S)
            self.requeue({**job, "state": state, "poll": job.get("poll", 0) + 1, "errors": 0}, interval)
        else:
            self._report(job, S.MONITOR_FAILED, reason=f"monitor returned {type(result).__name__}, "
                                                       "expected Done, Pending or Failed")

    def _past_deadline(self, job: dict[str, Any]) -> bool:
        return job.get("deadline") is not None and self.clock() > job["deadline"]

    def _mock(self, stone: Stone, ctx: StoneContext, job: dict[str, Any]) -> None:
        if not stone.has_mock():
            self._report(job, S.MOCK_PASSED, outputs={})
            return
        self._report(job, S.MOCK_BEGIN)
        try:
            outputs = stone.mock(ctx) or {}
        except Exception as exc:
            self._report(job, S.MOCK_FAILED, reason=_reason(exc), code=getattr(exc, "code", None))
            return
        self._report(job, S.MOCK_SUCCESS, outputs=outputs)

    def _simple(self, stone: Stone, ctx: StoneContext, job: dict[str, Any], event: str) -> None:
        self.reporter.send(self._make(job, f"{event}.begin"))
        try:
            getattr(stone, event)(ctx)
        except Exception as exc:
            self._failed(stone, job, f"{event}.failed", exc)
            return
        self._report(job, f"{event}.success")

    def _failed(self, stone: Stone, job: dict[str, Any], status: str, exc: Exception) -> None:
        """A failed event; a retryable one carries when the engine should try it again."""
        retry_in = None
        reason = _reason(exc)
        if isinstance(exc, RetryableError):
            policy = policy_for(type(stone), job)
            if job["attempt"] < policy.attempts:
                retry_in = backoff(policy, job["attempt"])
                reason = f"{reason} (attempt {job['attempt']}/{policy.attempts}, retrying in {retry_in:g}s)"
            else:
                reason = f"{reason} (attempt {job['attempt']}/{policy.attempts}, giving up)"
        self._report(job, status, reason=reason, code=getattr(exc, "code", None), retry_in=retry_in)

    # -- reporting: begin reports go out at once, the rest in one round trip at the end

    def _make(self, job: dict[str, Any], status: str, **fields: Any) -> StatusReport:
        progress = fields.pop("progress", None)
        return StatusReport(process=job["process"], task=job["task"], attempt=job["attempt"],
                            status=str(status), at=self.clock(),
                            progress=None if progress is None else str(progress), **fields)

    def _report(self, job: dict[str, Any], status: str, **fields: Any) -> None:
        self._pending.append(self._make(job, status, **fields))

    def _flush(self) -> None:
        if self._pending:
            reports, self._pending = self._pending, []
            self.reporter.send(*reports)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StoneError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def job_repr(job: dict[str, Any]) -> str:
    """What Celery shows of a job (Flower, logs): secrets masked."""
    return repr({"job": mask(job)})


def register(app: Celery) -> None:
    settings = app.conf.orchestrator_settings
    reporter = StatusReporter(settings.redis_url, settings.status_stream)
    guard = RedisJobGuard(settings.redis_url)

    @app.task(name=JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def stone_event(self, job: dict[str, Any]) -> None:
        def requeue(next_job: dict[str, Any], countdown: float) -> None:
            self.app.send_task(JOB_TASK, kwargs={"job": next_job}, queue=f"stone.{next_job['stone']}",
                               countdown=countdown, kwargsrepr=job_repr(next_job))

        JobRunner(reporter, requeue, guard, lock_ttl_s=settings.lease_s).run(job)
