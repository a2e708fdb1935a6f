"""Rollback, debug, cancel, delete, retries, mock, outputs, boundary events, the reconciler.

The service runs against a real database and a real Redis; a ``Workers`` stand-in plays
the stones' part by sending the reports a worker would (the real workers are in e2e/).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from orchestrator.celery_app import make_celery
from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher
from orchestrator.errors import Conflict
from orchestrator.service import ModelRef, Service
from orchestrator.status import StatusReport
from tests.bpmn import HEAD, chain, service_task
from tests.integration.conftest import queued_jobs

OK = {"start": ["start.begin", "start.success", "monitor.begin", "monitor.success"],
      "mock": ["mock.passed"], "rollback": ["rollback.begin", "rollback.success"],
      "delete": ["delete.begin", "delete.success"], "cancel": ["cancel.begin", "cancel.success"]}


class Workers:
    """Answers every handed-over task with the reports of its event; ``plan`` overrides by task name."""

    def __init__(self, service: Service, plan: dict[str, Callable] | None = None):
        self.service = service
        self.plan = plan or {}
        self.seen: list[tuple[str, str, int]] = []  # (event, name, attempt) in the order run

    def step(self, pid: str | None = None) -> int:
        with self.service.store.read() as tx:
            rows = tx.cx.exec_driver_sql(
                "SELECT pk FROM tasks WHERE status = 'produce.success' ORDER BY pk").scalars().all()
        guard = self.service.dispatcher.guard
        tasks = [self.service.get_task(str(pk)) for pk in rows if not guard.client.exists(guard._revoked_key(pk))]
        for t in tasks:
            self.seen.append((t.event, t.name, t.attempt))
            statuses = self.plan.get((t.event, t.name), lambda task: [(s, {}) for s in OK[task.event]])(t)
            reports = [StatusReport(process=t.process_pk, task=t.pk, attempt=t.attempt, status=s, at=time.time(),
                                    outputs={"by": t.name} if s.endswith("success") else None, **extra)
                       for s, extra in statuses]
            self.service.publish(self.service.apply_reports(reports))
        return len(tasks)

    def run(self, limit: int = 50) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("workers never ran out of tasks")


def until(call: Callable[[], int], timeout: float = 10.0) -> int:
    """Call ``call`` until it reports work done (a non-zero count), or give up after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (done := call()) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return done


def fail(status: str, reason: str = "boom", **extra) -> Callable:
    def plan(task):
        head = OK["start"][: OK["start"].index(status.replace("failed", "success"))] if "start" not in status \
            else ["start.begin"]
        return [(s, {}) for s in head] + [(status, {"reason": reason, **extra})]
    return plan


@pytest.fixture
def svc(store, settings, redis_client) -> Service:
    return Service(store, Dispatcher(make_celery(settings)), settings)


def start(svc: Service, xml: str, key: str, variables=None, debug=False) -> str:
    svc.deploy(xml)
    return str(svc.start_process(ModelRef(key=key), key, variables or {}, debug=debug).pk)


ABC = chain("abc", ("a", "NoopStone", {}), ("b", "NoopStone", {}), ("c", "NoopStone", {}))


def test_a_failure_rolls_back_every_started_task_in_reverse_order(svc):
    pid = start(svc, ABC, "abc")
    workers = Workers(svc, {("start", "c"): fail("monitor.failed", "disk full")})
    workers.run()
    proc = svc.get_process(pid)
    assert proc.status == "rollbacked" and "disk full" in proc.reason
    rb = svc.get_process(str(proc.rollback_process_pk))
    assert (rb.kind, rb.status, rb.parent_pk, rb.process_type) == ("rollback", "success", proc.pk, "rollback")
    assert [n for e, n, _ in workers.seen if e == "rollback"] == ["c", "b", "a"]
    undo = svc.list_tasks(str(rb.pk))
    assert [(t.name, t.status) for t in undo] == [("c", "rollback.success"), ("b", "rollback.success"),
                                                  ("a", "rollback.success")]
    # the originals keep their own story
    assert [t.status for t in svc.list_tasks(pid)] == ["monitor.success", "monitor.success", "monitor.failed"]


FORK = (HEAD + '<bpmn:process id="fork" isExecutable="true"><bpmn:startEvent id="s"/>'
        '<bpmn:parallelGateway id="split"/><bpmn:parallelGateway id="join"/><bpmn:endEvent id="e"/>'
        + service_task("a", "NoopStone") + service_task("b", "NoopStone") + service_task("after", "NoopStone")
        + "".join(f'<bpmn:sequenceFlow id="f{i}" sourceRef="{x}" targetRef="{y}"/>' for i, (x, y) in enumerate(
            [("s", "split"), ("split", "a"), ("split", "b"), ("a", "join"), ("b", "join"), ("join", "after"),
             ("after", "e")])) + "</bpmn:process></bpmn:definitions>")


def report(svc, task, *statuses, **extra):
    svc.publish(svc.apply_reports(
        StatusReport(process=task.process_pk, task=task.pk, attempt=task.attempt, status=s, at=time.time(), **extra)
        for s in statuses))


def test_rollback_waits_for_branches_still_in_flight(svc):
    pid = start(svc, FORK, "fork")
    a, b = svc.list_tasks(pid)
    report(svc, b, "start.begin")
    report(svc, a, "start.begin", "start.failed", reason="quota")
    assert svc.get_process(pid).status == "failed"  # b is still creating something
    report(svc, b, "start.success", "monitor.begin", "monitor.success")
    proc = svc.get_process(pid)
    assert proc.status == "rollbacking"
    assert [t.name for t in svc.list_tasks(pid)] == ["a", "b"]  # nothing after the join was started
    assert [t.name for t in svc.list_tasks(str(proc.rollback_process_pk))] == ["b", "a"]


def test_debug_mode_waits_then_rerun_goes_on(svc, redis_client):
    pid = start(svc, ABC, "abc", debug=True)
    workers = Workers(svc, {("start", "b"): fail("start.failed", "flaky api")})
    workers.run()
    proc = svc.get_process(pid)
    assert proc.status == "debug" and "flaky api" in proc.reason and proc.rollback_process_pk is None
    a, b = svc.list_tasks(pid)
    with pytest.raises(Conflict):
        svc.rerun_task(str(a.pk))  # not failed
    task = svc.rerun_task(str(b.pk))
    assert (task.attempt, task.generation, task.status) == (2, 2, "produce.success")
    assert svc.get_process(pid).status == "running"
    with pytest.raises(Conflict):
        svc.rerun_task(str(b.pk))  # the process is no longer in debug
    del workers.plan[("start", "b")]
    workers.run()
    assert svc.get_process(pid).status == "success"
    history = [(e.attempt, e.status) for e in svc.task_history(str(b.pk))]
    assert (1, "start.failed") in history and (2, "monitor.success") in history
    keys = {j["key"] for j in queued_jobs(redis_client, "NoopStone") if j["task"] == b.pk}
    assert keys == {f"{b.id}-1", f"{b.id}-2"}  # a reRun asks the provider afresh


def test_debug_resume_rolls_back(svc):
    pid = start(svc, ABC, "abc", debug=True)
    Workers(svc, {("start", "b"): fail("monitor.failed")}).run()
    b = svc.list_tasks(pid)[1]
    svc.resume_task(str(b.pk))
    workers = Workers(svc)
    workers.run()
    assert svc.get_process(pid).status == "rollbacked"
    assert [n for e, n, _ in workers.seen] == ["b", "a"]


def test_cancel_stops_tasks_in_flight_and_ends_canceled(svc, redis_client):
    pid = start(svc, FORK, "fork")
    a, b = svc.list_tasks(pid)
    report(svc, a, "start.begin", "start.success", "monitor.begin")
    proc = svc.cancel_process(pid)
    assert proc.status == "canceling" and proc.cancel_process_pk
    with pytest.raises(Conflict):
        svc.cancel_process(pid)  # a second cancel
    assert redis_client.exists(f"orch:revoked:{a.pk}") and redis_client.exists(f"orch:revoked:{b.pk}")
    cancel_tasks = svc.list_tasks(str(proc.cancel_process_pk))
    assert sorted(t.name for t in cancel_tasks) == ["a", "b"]  # b was handed over: it may be starting
    Workers(svc).run()
    proc = svc.get_process(pid)
    assert proc.status == "canceled"
    assert svc.get_process(str(proc.cancel_process_pk)).status == "success"
    assert {t.status for t in svc.list_tasks(pid)} == {"canceled"}
    report(svc, a, "monitor.success")  # the stone's last word arrives late: no effect
    assert svc.get_task(str(a.pk)).status == "canceled"
    with pytest.raises(Conflict):
        svc.cancel_process(pid)


def test_delete_runs_delete_of_every_started_task_in_reverse(svc):
    pid = start(svc, ABC, "abc")
    with pytest.raises(Conflict):
        svc.delete_process(pid)  # still running
    Workers(svc).run()
    assert svc.get_process(pid).status == "success"
    proc = svc.delete_process(pid)
    assert proc.status == "deleting"
    with pytest.raises(Conflict):
        svc.delete_process(pid)
    workers = Workers(svc)
    workers.run()
    assert [n for e, n, _ in workers.seen] == ["c", "b", "a"]
    proc = svc.get_process(pid)
    assert proc.status == "deleted"
    assert svc.get_process(str(proc.delete_process_pk)).status == "success"
    with pytest.raises(Conflict):
        svc.cancel_process(str(proc.delete_process_pk))  # derived processes are not operated on


def test_a_failed_delete_says_so(svc):
    pid = start(svc, ABC, "abc")
    Workers(svc).run()
    svc.delete_process(pid)
    Workers(svc, {("delete", "b"): lambda t: [("delete.begin", {}), ("delete.failed", {"reason": "in use"})]}).run()
    proc = svc.get_process(pid)
    assert proc.status == "delete_failed" and "in use" in proc.reason
    assert svc.delete_process(pid).status == "deleting"  # may be tried again


def test_retryable_failures_get_new_attempts_visible_in_history(svc, redis_client):
    pid = start(svc, chain("one", ("a", "NoopStone", {})), "one")
    (a,) = svc.list_tasks(pid)
    report(svc, a, "start.begin", "start.failed", reason="throttled (retrying)", retry_in=0.5)
    a = svc.get_task(str(a.pk))
    assert (a.attempt, a.status) == (2, "produce.success")
    assert svc.get_process(pid).status == "running"
    retry_job = max(queued_jobs(redis_client, "NoopStone"), key=lambda j: j["attempt"])
    assert retry_job["attempt"] == 2 and retry_job["key"] == f"{a.id}-1"  # same key: find what attempt 1 made
    report(svc, a, "start.begin", "start.success", "monitor.begin", "monitor.success")
    assert svc.get_process(pid).status == "success"
    history = [(e.attempt, e.status) for e in svc.task_history(str(a.pk))]
    assert history == [(1, "produce.success"), (1, "start.begin"), (1, "start.failed"), (2, "produce.success"),
                       (2, "start.begin"), (2, "start.success"), (2, "monitor.begin"), (2, "monitor.success")]


def test_mock_mode_runs_mock_events_only(svc, redis_client):
    pid = start(svc, ABC, "abc", variables={"SipRS::Mock": True})
    assert {j["event"] for j in queued_jobs(redis_client, "NoopStone")} == {"mock"}
    workers = Workers(svc)
    workers.run()
    assert {e for e, _, _ in workers.seen} == {"mock"}
    assert svc.get_process(pid).status == "success"
    assert {t.status for t in svc.list_tasks(pid)} == {"mock.passed"}


def test_outputs_come_from_the_models_template(svc):
    template = '{"by": "{{ by }}", "count": {{ slaveNum }}, "zone": "{{ data["master-1a"].zone }}", ' \
               '"m": {{ tasks["m"] | tojson }}}'
    svc.deploy(chain("tpl", ("m", "NoopStone", {})), output_template_text=template)
    pid = str(svc.start_process(ModelRef(key="tpl"), "t", {"slaveNum": 3, "master-1a": {"zone": "a"}}).pk)
    Workers(svc).run()
    proc = svc.get_process(pid)
    assert proc.status == "success"
    assert json.loads(proc.outputs) == {"by": "m", "count": 3, "zone": "a", "m": {"by": "m"}}
    assert json.loads(proc.native_outputs)["by"] == "m"


def test_a_broken_output_template_is_refused_at_deploy(svc):
    from orchestrator.errors import ModelInvalid

    with pytest.raises(ModelInvalid, match="output template"):
        svc.deploy(ABC, output_template_text="{{ unclosed")


BOUNDARY = (HEAD.replace('targetNamespace="http://bpmn.io/schema/bpmn">',
                         'targetNamespace="http://bpmn.io/schema/bpmn"><bpmn:error id="q" errorCode="QUOTA"/>')
            + '<bpmn:process id="bnd" isExecutable="true"><bpmn:startEvent id="s"/>'
            + service_task("vm", "SleepStone") + service_task("fallback", "NoopStone")
            + service_task("slow", "NoopStone")
            + '<bpmn:boundaryEvent id="on_quota" attachedToRef="vm"><bpmn:errorEventDefinition errorRef="q"/>'
              '</bpmn:boundaryEvent><bpmn:boundaryEvent id="timeout" attachedToRef="vm"><bpmn:timerEventDefinition>'
              '<bpmn:timeDuration>"PT1S"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>'
              '<bpmn:endEvent id="e1"/><bpmn:endEvent id="e2"/><bpmn:endEvent id="e3"/>'
            + "".join(f'<bpmn:sequenceFlow id="f{i}" sourceRef="{x}" targetRef="{y}"/>' for i, (x, y) in enumerate(
                [("s", "vm"), ("vm", "e1"), ("on_quota", "fallback"), ("fallback", "e2"), ("timeout", "slow"),
                 ("slow", "e3")])) + "</bpmn:process></bpmn:definitions>")


def test_an_error_boundary_event_catches_the_stones_code_on_that_task(svc):
    pid = start(svc, BOUNDARY, "bnd")
    (vm,) = svc.list_tasks(pid)
    report(svc, vm, "start.begin", "start.success", "monitor.begin", "monitor.failed", reason="no quota",
           code="QUOTA")
    tasks = svc.list_tasks(pid)
    assert [(t.name, t.status) for t in tasks] == [("vm", "monitor.failed"), ("fallback", "produce.success")]
    assert svc.get_process(pid).status == "running"
    Workers(svc).run()
    assert svc.get_process(pid).status == "success"


def test_an_uncaught_error_code_fails_the_process(svc):
    pid = start(svc, BOUNDARY, "bnd")
    (vm,) = svc.list_tasks(pid)
    report(svc, vm, "start.begin", "start.failed", reason="bad image", code="InvalidAMIID")
    assert svc.get_process(pid).status == "rollbacking"  # nothing else in flight: the rollback starts at once


def test_a_timer_boundary_event_times_the_task_out_and_cancels_its_work(svc, redis_client):
    pid = start(svc, BOUNDARY, "bnd")
    (vm,) = svc.list_tasks(pid)
    report(svc, vm, "start.begin", "start.success", "monitor.begin")
    assert svc.get_process(pid).next_timer_at is not None
    assert svc.fire_due_timers() == 0  # not yet: the timer is due one second after the task started
    assert until(svc.fire_due_timers) == 1
    tasks = svc.list_tasks(pid)
    assert sorted((t.name, t.event, t.status) for t in tasks) == [
        ("slow", "start", "produce.success"), ("vm", "cancel", "produce.success"), ("vm", "start", "canceled")]
    assert redis_client.exists(f"orch:revoked:{vm.pk}")
    cancel_job = next(j for j in queued_jobs(redis_client, "SleepStone") if j["event"] == "cancel")
    assert cancel_job["lock"] == vm.pk
    Workers(svc).run()
    assert svc.get_process(pid).status == "success"


def test_the_reconciler_resends_jobs_whose_lease_ran_out(store, db_url, redis_url, redis_client):
    settings = Settings(database_url=db_url, redis_url=redis_url, lease_s=1.0)
    svc = Service(store, Dispatcher(make_celery(settings)), settings)
    pid = start(svc, chain("one", ("a", "NoopStone", {})), "one")
    (a,) = svc.list_tasks(pid)
    assert svc.reconcile() == 0
    redis_client.delete("stone.NoopStone")  # the job is lost (Redis restarted without persistence)
    assert until(svc.reconcile) == 1
    (job,) = queued_jobs(redis_client, "NoopStone")
    assert (job["event"], job["task"], job["attempt"]) == ("start", a.pk, 1)
    report(svc, svc.get_task(str(a.pk)), "start.begin", "start.success", state={"id": "i-1"})
    redis_client.delete("stone.NoopStone")
    assert until(svc.reconcile) == 1
    (job,) = queued_jobs(redis_client, "NoopStone")
    assert job["event"] == "monitor" and job["state"] == {"id": "i-1"}  # carries on where it stood
    assert svc.get_task(str(a.pk)).redispatches == 2
