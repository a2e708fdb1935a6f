"""Status reports through a real Redis stream and the engine loop that applies them."""

from __future__ import annotations

import time

import redis

from orchestrator.consumer import EngineLoop
from orchestrator.service import ModelRef
from orchestrator.status import StatusReport, StatusReporter, StatusStream
from tests.conftest import example

STREAM, GROUP = "orch:status:test", "engine"


def report(i: int, status: str = "start.begin") -> StatusReport:
    return StatusReport(process=1, task=i, attempt=1, status=status, at=time.time(), outputs={"i": i})


def test_reports_are_read_once_and_acknowledged(redis_client, redis_url):
    reporter = StatusReporter(redis_url, STREAM)
    stream = StatusStream(redis_client, STREAM, GROUP, "c1")
    stream.ensure_group()
    stream.ensure_group()  # idempotent
    reporter.send(report(1))
    reporter.send(report(2), report(3))
    entries = stream.read(10, 100)
    assert [r.task for _, r in entries] == [1, 2, 3]
    assert entries[0][1].outputs == {"i": 1}
    assert stream.read(10, 10) == []
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 3
    stream.ack([eid for eid, _ in entries])
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0


def test_a_dead_consumers_reports_are_claimed_by_another(redis_client, redis_url):
    StatusReporter(redis_url, STREAM).send(report(1), report(2))
    dead = StatusStream(redis_client, STREAM, GROUP, "dead")
    dead.ensure_group()
    assert len(dead.read(10, 100)) == 2  # read, then the process died: never acknowledged
    alive = StatusStream(redis_client, STREAM, GROUP, "alive")
    assert alive.read(10, 10) == []
    claimed = alive.claim_stale(idle_ms=0, count=10)
    assert [r.task for _, r in claimed] == [1, 2]


def test_malformed_entries_are_dropped_not_fatal(redis_client):
    stream = StatusStream(redis_client, STREAM, GROUP, "c1")
    stream.ensure_group()
    redis_client.xadd(STREAM, {"r": "{not json"})
    redis_client.xadd(STREAM, {"r": report(5).to_json()})
    entries = stream.read(10, 100)
    assert entries[0][1] is None and entries[1][1].task == 5


def test_the_stream_is_recreated_when_redis_lost_it(redis_client):
    stream = StatusStream(redis_client, STREAM, GROUP, "c1")
    stream.ensure_group()
    redis_client.delete(STREAM)
    assert stream.read(10, 10) == []
    assert redis_client.xinfo_groups(STREAM)[0]["name"] == GROUP.encode()


def test_trim_drops_only_acknowledged_entries(redis_client, redis_url):
    reporter = StatusReporter(redis_url, STREAM)
    stream = StatusStream(redis_client, STREAM, GROUP, "c1")
    stream.ensure_group()
    reporter.send(*[report(i) for i in range(300)])
    entries = stream.read(200, 100)
    stream.ack([eid for eid, _ in entries[:150]])
    stream.trim(every_s=0)
    # Nothing unacknowledged or unread is gone.
    remaining = {e[0].decode() for e in redis_client.xrange(STREAM)}
    assert {eid for eid, _ in entries[150:]} <= remaining
    assert 150 <= redis_client.xlen(STREAM) < 300  # acknowledged entries went (trimming is approximate)


def test_engine_loop_applies_a_batch_and_acknowledges_after_commit(service, redis_client, redis_url):
    service.deploy(example("noop_chain.bpmn"))
    proc = service.start_process(ModelRef(key="noop_chain"), "p", {})
    (task,) = service.list_tasks(str(proc.pk))
    reporter = StatusReporter(redis_url, STREAM)
    reporter.send(*[StatusReport(process=proc.pk, task=task.pk, attempt=1, status=s, at=time.time())
                    for s in ("start.begin", "start.success", "monitor.begin", "monitor.success")])
    loop = EngineLoop(service, StatusStream(redis.Redis.from_url(redis_url), STREAM, GROUP, "e1"), block_ms=100)
    loop.stream.ensure_group()
    assert loop.run_once() == 4
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
    assert service.get_task(str(task.pk)).status == "monitor.success"
    tasks = service.list_tasks(str(proc.pk))
    assert [t.name for t in tasks] == ["step 1", "step 2"]
    assert redis_client.llen("stone.NoopStone") == 2  # published after the commit
    # its produce.success is written with the next batch, or as soon as the loop is idle
    assert tasks[1].status is None
    assert loop.run_once() == 0
    assert service.get_task(str(tasks[1].pk)).status == "produce.success"
    with service.store.read() as tx:
        assert tx.cx.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0


def test_jobs_the_api_published_are_marked_produced_by_the_engine(store, settings, redis_client, redis_url):
    from orchestrator.celery_app import make_celery
    from orchestrator.dispatch import Dispatcher
    from orchestrator.service import Service

    api_side = Service(store, Dispatcher(make_celery(settings)), settings, marks="relay")
    api_side.deploy(example("noop_chain.bpmn"))
    proc = api_side.start_process(ModelRef(key="noop_chain"), "p", {})
    (task,) = api_side.list_tasks(str(proc.pk))
    assert task.status is None and redis_client.llen("stone.NoopStone") == 1  # published, not yet recorded
    engine_side = Service(store, Dispatcher(make_celery(settings)), settings)
    loop = EngineLoop(engine_side, StatusStream(redis.Redis.from_url(redis_url), STREAM, GROUP, "e1"), block_ms=50)
    loop.stream.ensure_group()
    loop.run_once()
    assert engine_side.get_task(str(task.pk)).status == "produce.success"
    assert [e.status for e in engine_side.task_history(str(task.pk))] == ["produce.success"]
    with store.read() as tx:
        assert tx.cx.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0
