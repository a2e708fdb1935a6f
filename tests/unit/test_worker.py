"""The worker's job runner, with a recording reporter (a fake of our own interface)."""

from __future__ import annotations

from typing import Any

from orchestrator.dispatch import job_for
from orchestrator.worker import JobRunner, backoff
from stones.base import Done, Failed, Pending, RetryableError, RetryPolicy, Stone, TerminalError


class Recorder:
    def __init__(self):
        self.reports = []

    def send(self, *reports):
        self.reports.extend(reports)

    @property
    def statuses(self):
        return [r.status for r in self.reports]


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class Polls(Stone):
    name = "Polls"
    monitor_interval_s = 2.0
    monitor_deadline_s = 10.0

    def start(self, ctx):
        return {"id": "r-1"}

    def monitor(self, ctx):
        if ctx.poll < 2:
            return Pending(progress=ctx.poll * 40)
        return Done({"id": ctx.state["id"], "key": ctx.idempotency_key})


class Broken(Stone):
    name = "Broken"

    def start(self, ctx):
        raise TerminalError("quota exceeded", code="QUOTA")


class Refuses(Stone):
    name = "Refuses"

    def monitor(self, ctx):
        return Failed("instance went to error state")


class Mocks(Stone):
    name = "Mocks"

    def mock(self, ctx):
        return {"predicted": ctx.params["n"] * 2}


STONES = {s.name: s for s in (Polls, Broken, Refuses, Mocks)}


def job(stone: str, event: str = "start", **kw: Any) -> dict:
    return job_for(process_pk=7, task_pk=11, task_uuid="u-1", attempt=1, stone=stone, event=event,
                   name="t", namespace=None, params=kw.pop("params", {}), **kw)


class Guard:
    """A fake of ``jobguard.JobGuard``: a set of revoked tasks, a set of running ones."""

    def __init__(self, revoked=(), busy=()):
        self.revoked, self.busy = set(revoked), set(busy)

    def begin(self, job, ttl_s):
        if job["task"] in self.revoked:
            return "revoked"
        if job.get("lock", job["task"]) in self.busy:
            return "busy"
        self.busy.add(job.get("lock", job["task"]))
        return None

    def release(self, job):
        self.busy.discard(job.get("lock", job["task"]))


def runner(clock=None, guard=None):
    rec, queued = Recorder(), []
    r = JobRunner(rec, lambda j, countdown: queued.append((j, countdown)), guard or Guard(),
                  clock=clock or Clock(), resolve=lambda name: STONES[name])
    return r, rec, queued


def test_start_then_monitor_polls_with_countdown_until_done():
    clock = Clock()
    r, rec, queued = runner(clock)
    r.run(job("Polls"))
    assert rec.statuses == ["start.begin", "start.success", "monitor.begin", "monitor.begin"]
    assert rec.reports[1].state == {"id": "r-1"}
    assert rec.reports[3].progress == "0"
    (next_job, countdown), = queued
    assert countdown == 2.0 and next_job["event"] == "monitor" and next_job["poll"] == 1
    assert next_job["deadline"] == 1010.0
    clock.t += 2
    queued.clear()
    r.run(next_job)
    (next_job, _), = queued
    assert rec.statuses[-1] == "monitor.begin" and rec.reports[-1].progress == "40"
    r.run(next_job)
    assert rec.statuses[-1] == "monitor.success"
    assert rec.reports[-1].outputs == {"id": "r-1", "key": "u-1-1"}
    assert all((x.process, x.task, x.attempt) == (7, 11, 1) for x in rec.reports)


def test_a_passed_deadline_is_monitor_failed_and_says_so():
    clock = Clock()
    r, rec, queued = runner(clock)
    r.run(job("Polls"))
    (next_job, _), = queued
    clock.t += 11
    queued.clear()
    r.run(next_job)
    assert rec.statuses[-1] == "monitor.failed"
    assert "deadline" in rec.reports[-1].reason
    assert queued == []


def test_model_overrides_interval_and_deadline():
    r, rec, queued = runner()
    r.run(job("Polls", properties={"monitorInterval": "0.5", "monitorDeadline": "3"}))
    (next_job, countdown), = queued
    assert countdown == 0.5 and next_job["deadline"] == 1003.0


def test_start_error_is_start_failed_with_reason():
    r, rec, _ = runner()
    r.run(job("Broken"))
    assert rec.statuses == ["start.begin", "start.failed"]
    assert rec.reports[-1].reason == "quota exceeded"


def test_monitor_failed_result():
    r, rec, _ = runner()
    r.run(job("Refuses"))
    assert rec.statuses == ["start.begin", "start.success", "monitor.begin", "monitor.failed"]
    assert rec.reports[-1].reason == "instance went to error state"


def test_unknown_stone_fails_the_event():
    r, rec, _ = runner()
    r.run(job("Nope"))
    assert rec.statuses == ["start.failed"]


def test_mock_runs_mock_or_passes():
    r, rec, _ = runner()
    r.run(job("Mocks", event="mock", params={"n": 21}))
    assert rec.statuses == ["mock.begin", "mock.success"]
    assert rec.reports[-1].outputs == {"predicted": 42}
    r, rec, _ = runner()
    r.run(job("Polls", event="mock"))
    assert rec.statuses == ["mock.passed"]


class Throttled(Stone):
    name = "Throttled"
    retry = RetryPolicy(attempts=3, backoff_s=2.0, max_backoff_s=5.0, jitter=False)

    def start(self, ctx):
        raise RetryableError("Throttling: rate exceeded")


class FlakyPoll(Stone):
    name = "FlakyPoll"
    retry = RetryPolicy(attempts=2, backoff_s=1.0, jitter=False)

    def monitor(self, ctx):
        raise RetryableError("503 from the provider")


STONES.update({s.name: s for s in (Throttled, FlakyPoll)})


def test_retryable_start_failure_asks_for_another_attempt_with_backoff():
    r, rec, _ = runner()
    r.run(job("Throttled"))
    failed = rec.reports[-1]
    assert failed.status == "start.failed" and failed.retry_in == 2.0
    assert "attempt 1/3" in failed.reason
    r, rec, _ = runner()
    r.run({**job("Throttled"), "attempt": 2})
    assert rec.reports[-1].retry_in == 4.0
    r, rec, _ = runner()
    r.run({**job("Throttled"), "attempt": 3})
    assert rec.reports[-1].retry_in is None and "giving up" in rec.reports[-1].reason


def test_model_can_override_the_retry_policy():
    r, rec, _ = runner()
    r.run(job("Throttled", properties={"retryAttempts": "1"}))
    assert rec.reports[-1].retry_in is None


def test_backoff_is_exponential_capped_and_jittered():
    policy = RetryPolicy(attempts=10, backoff_s=1.0, max_backoff_s=8.0, jitter=True)
    assert [backoff(policy, n, rng=lambda: 0.5) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff(policy, 1, rng=lambda: 0.0) == 0.5 and backoff(policy, 1, rng=lambda: 0.999) < 1.5


def test_a_retryable_poll_error_polls_again_then_fails():
    r, rec, queued = runner()
    r.run(job("FlakyPoll"))
    assert rec.statuses[-1] == "monitor.begin" and "poll failed (1/2)" in rec.reports[-1].reason
    (again, delay), = queued
    assert delay == 1.0 and again["errors"] == 1
    r.run(again)
    assert rec.statuses[-1] == "monitor.failed" and "503" in rec.reports[-1].reason


def test_revoked_and_duplicate_jobs_are_dropped_and_undo_jobs_wait():
    r, rec, queued = runner(guard=Guard(revoked={11}))
    r.run(job("Polls"))
    assert rec.reports == [] and queued == []
    guard = Guard(busy={11})
    r, rec, queued = runner(guard=guard)
    r.run(job("Polls"))  # a duplicate of a start running elsewhere
    assert rec.reports == [] and queued == []
    undo = {**job("Polls", event="rollback"), "task": 99, "lock": 11}
    r.run(undo)  # the rollback of a task whose start is still running waits for it
    assert rec.reports == [] and queued == [(undo, 2.0)]
    guard.busy.clear()
    r.run(undo)
    assert rec.statuses == ["rollback.begin", "rollback.success"]
