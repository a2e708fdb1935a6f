"""Service + store + dispatch against a real database and a real Redis."""

from __future__ import annotations

import json
import random
import time

import pytest

from orchestrator.celery_app import make_celery
from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.service import ModelRef, Service
from orchestrator.status import StatusReport
from tests.bpmn import chain
from tests.conftest import example
from tests.integration.conftest import queued_jobs

FORWARD = ["start.begin", "start.success", "monitor.begin", "monitor.success"]


def reports_for(task, statuses=FORWARD, outputs=None, attempt=1):
    return [StatusReport(process=task.process_pk, task=task.pk, attempt=attempt, status=s, at=time.time(),
                         outputs=(outputs if s == "monitor.success" else None),
                         progress="50" if s == "monitor.begin" else None)
            for s in statuses]


def open_tasks(service, pid):
    return [t for t in service.list_tasks(pid) if t.status in (None, "produce.success")]


def test_start_writes_rows_and_publishes_one_job_per_ready_task(service, redis_client):
    service.deploy(example("noop_chain.bpmn"))
    proc = service.start_process(ModelRef(key="noop_chain"), "p", {"password": "hunter2"})
    assert proc.status == "running"
    (task,) = service.list_tasks(str(proc.pk))
    assert task.status == "produce.success"
    assert task.stone == "NoopStone" and task.name == "step 1"
    (job,) = queued_jobs(redis_client, "NoopStone")
    assert job["task"] == task.pk and job["process"] == proc.pk and job["event"] == "start"
    assert job["key"] == f"{task.id}-1"
    assert [e.status for e in service.task_history(str(task.pk))] == ["produce.success"]
    with service.store.read() as tx:
        assert tx.cx.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0


def test_reports_drive_a_process_to_success(service, redis_client):
    service.deploy(example("provision_cluster.bpmn"))
    proc = service.start_process(ModelRef(key="provision_cluster"), "seed", {
        "slaveNum": "6", "vpcId": "vpc-1", "subnetId": "s-1", "imageId": "ami-1", "projectId": "p",
        "slave-": {"instanceType": "m2.large"}, "master-1a": {"instanceType": "m2.large"}})
    pid = str(proc.pk)
    rounds = []
    while tasks := open_tasks(service, pid):
        rounds.append(sorted(t.namespace for t in tasks))
        service.publish(service.apply_reports(
            r for t in tasks for r in reports_for(t, outputs={"instanceId": f"i-{t.namespace}"})))
    assert rounds == [["master-1a"], [f"slave-{i}" for i in range(1, 7)], ["Bingo::RS::FRONT::RSBILLING"]]
    proc = service.get_process(pid)
    assert proc.status == "success" and proc.end_time is not None
    native = json.loads(proc.native_outputs)
    assert native["slave-6"] == {"instanceId": "i-slave-6"}
    assert native["master-1a"] == {"instanceType": "m2.large", "instanceId": "i-master-1a"}
    assert len(queued_jobs(redis_client, "SleepStone")) == 7
    t = service.list_tasks(pid)[0]
    assert [e.status for e in service.task_history(str(t.pk))] == ["produce.success", *FORWARD]
    assert t.end_time is not None and t.progress == "50"


def test_duplicated_shuffled_reports_change_nothing_more(service):
    service.deploy(example("parallel_disks.bpmn"))
    proc = service.start_process(ModelRef(key="parallel_disks"), "p", {"imageId": "a", "vmOutputs": {},
                                                                      "billing": "yes"})
    pid = str(proc.pk)
    rng = random.Random(7)
    while tasks := open_tasks(service, pid):
        batch = [r for t in tasks for r in reports_for(t, outputs={"n": t.name})] * 3
        rng.shuffle(batch)
        service.apply_reports(batch)
        service.apply_reports(batch)  # and once more, later
    assert service.get_process(pid).status == "success"
    for t in service.list_tasks(pid):
        history = [e.status for e in service.task_history(str(t.pk))]
        assert len(history) == len(set(history)), history  # no status applied twice
        assert history[-1] == "monitor.success"
        assert t.status == "monitor.success"


def test_late_and_stale_reports_are_no_ops(service):
    service.deploy(example("noop_chain.bpmn"))
    pid = str(service.start_process(ModelRef(key="noop_chain"), "p", {}).pk)
    (task,) = service.list_tasks(pid)
    service.apply_reports(reports_for(task))
    service.apply_reports(reports_for(task, ["start.begin", "monitor.begin"]))  # late
    service.apply_reports(reports_for(task, ["monitor.failed"], attempt=2))  # another attempt
    service.apply_reports(reports_for(task, ["monitor.failed"]))  # after success
    task = service.get_task(str(task.pk))
    assert task.status == "monitor.success"
    assert service.get_process(pid).status == "running"
    assert len(service.list_tasks(pid)) == 2  # step 2 created once


def test_a_failed_task_fails_the_process_with_its_reason(service):
    service.deploy(chain("two", ("a", "NoopStone", {}), ("b", "NoopStone", {})))
    pid = str(service.start_process(ModelRef(key="two"), "p", {}).pk)
    (task,) = service.list_tasks(pid)
    bad = reports_for(task, ["start.begin", "start.failed"])
    bad[1] = StatusReport(**{**bad[1].__dict__, "reason": "quota exceeded"})
    service.publish(service.apply_reports(bad))
    proc = service.get_process(pid)
    # failed, and with nothing left in flight the rollback starts at once
    assert proc.status == "rollbacking" and proc.end_time is not None
    assert "quota exceeded" in proc.reason and "start.failed" in proc.reason
    assert service.get_task(str(task.pk)).reason == "quota exceeded"
    assert len(service.list_tasks(pid)) == 1
    (undo,) = service.list_tasks(str(proc.rollback_process_pk))
    assert (undo.event, undo.origin_pk, undo.status) == ("rollback", task.pk, "produce.success")


@pytest.mark.parametrize("ref", [ModelRef(model_id="nope"), ModelRef(deployment_id="nope"), ModelRef(key="nope")])
def test_unknown_model_writes_nothing(service, redis_client, ref):
    service.deploy(example("noop_chain.bpmn"))
    with pytest.raises(NotFound):
        service.start_process(ref, "p", {})
    with service.store.read() as tx:
        assert tx.cx.exec_driver_sql("SELECT count(*) FROM processes").scalar() == 0
    assert redis_client.llen("stone.NoopStone") == 0


def test_a_model_error_while_running_fails_nothing_half_written(service, redis_client):
    service.deploy(chain("bad", ("a", "NoopStone", {"x": "undefined_variable + 1"})))
    with pytest.raises(InvalidInput):
        service.start_process(ModelRef(key="bad"), "p", {})
    with service.store.read() as tx:
        assert tx.cx.exec_driver_sql("SELECT count(*) FROM processes").scalar() == 0
    assert redis_client.llen("stone.NoopStone") == 0


def test_versions_and_references(service):
    first = service.deploy(example("noop_chain.bpmn"))
    again = service.deploy(example("noop_chain.bpmn"))
    assert again.deployment_id == first.deployment_id  # same document: no new version
    second = service.deploy(chain("noop_chain", ("only", "NoopStone", {})))
    assert second.version == 2 and second.model_id == first.model_id
    by_key = service.start_process(ModelRef(key="noop_chain"), "p", {})
    by_model = service.start_process(ModelRef(model_id=first.model_id), "p", {})
    by_dep = service.start_process(ModelRef(deployment_id=first.deployment_id), "p", {})
    assert by_key.deployment_id == by_model.deployment_id == second.deployment_id
    assert by_dep.deployment_id == first.deployment_id
    model, deployments = service.get_model(first.model_id)
    assert [d.version for d in deployments] == [1, 2]


@pytest.fixture
def offline(store, settings) -> Service:
    """A service whose broker cannot be reached (a port nothing listens on), retrying nothing."""
    dead = Settings(database_url=settings.database_url, redis_url="redis://127.0.0.1:1/0")
    app = make_celery(dead)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    service = Service(store, Dispatcher(app), dead)
    service.deploy(example("noop_chain.bpmn"))
    return service


def test_unpublished_jobs_wait_in_the_outbox_and_the_sweeper_sends_them(offline, store, settings, redis_client):
    pid = str(offline.start_process(ModelRef(key="noop_chain"), "p", {}).pk)
    (task,) = offline.list_tasks(pid)
    assert task.status is None  # not handed to any broker yet
    online = Service(store, Dispatcher(make_celery(settings)), settings)
    assert online.sweep_outbox(older_than_s=0) == 1
    assert online.get_task(str(task.pk)).status == "produce.success"
    assert len(queued_jobs(redis_client, "NoopStone")) == 1
    assert online.sweep_outbox(older_than_s=0) == 0


def test_a_job_the_broker_keeps_refusing_ends_produce_failed(offline):
    pid = str(offline.start_process(ModelRef(key="noop_chain"), "p", {}).pk)
    offline.sweep_outbox(older_than_s=0, give_up_after_s=0)
    (task,) = offline.list_tasks(pid)
    assert task.status == "produce.failed" and "broker refused" in task.reason
    proc = offline.get_process(pid)
    # it failed; no job ever reached a worker, so its rollback has nothing to undo
    assert proc.status == "rollbacked" and "produce.failed" in proc.reason
    assert offline.list_tasks(str(proc.rollback_process_pk)) == []


def test_engine_cache_and_a_second_engine_agree(store, settings, redis_client):
    """Two services (two engines) alternate on one process: versions keep them consistent."""
    a = Service(store, Dispatcher(make_celery(settings)), settings)
    b = Service(store, Dispatcher(make_celery(settings)), settings)
    a.deploy(example("noop_chain.bpmn"))
    pid = str(a.start_process(ModelRef(key="noop_chain"), "p", {}).pk)
    engines = [a, b]
    i = 0
    while tasks := open_tasks(a, pid):
        engines[i % 2].apply_reports(r for t in tasks for r in reports_for(t, outputs={f"s{i}": i}))
        i += 1
    assert i == 5
    assert a.get_process(pid).status == "success"
    assert len(a.list_tasks(pid)) == 5
