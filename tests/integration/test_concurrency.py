"""Two engine processes apply reports for two branches of one process at the same moment."""

from __future__ import annotations

import multiprocessing as mp
import time

from orchestrator.config import Settings
from orchestrator.service import ModelRef, Service
from orchestrator.status import StatusReport
from orchestrator.store import Store
from tests.bpmn import HEAD, service_task

FORK_JOIN = (HEAD + '<bpmn:process id="fork_join" isExecutable="true"><bpmn:startEvent id="s"/>'
             '<bpmn:parallelGateway id="fork"/><bpmn:parallelGateway id="join"/><bpmn:endEvent id="e"/>'
             + service_task("a", "NoopStone", props={"namespace": "a"})
             + service_task("b", "NoopStone", props={"namespace": "b"})
             + service_task("c", "NoopStone")
             + "".join(f'<bpmn:sequenceFlow id="f{i}" sourceRef="{x}" targetRef="{y}"/>' for i, (x, y) in enumerate(
                 [("s", "fork"), ("fork", "a"), ("fork", "b"), ("a", "join"), ("b", "join"), ("join", "c"),
                  ("c", "e")]))
             + "</bpmn:process></bpmn:definitions>")

ROUNDS = 6


def _engine(db_url: str, barrier, batches: list[list[dict]]) -> None:
    service = Service(Store(db_url), None, Settings(database_url=db_url))
    for batch in batches:
        barrier.wait(timeout=30)
        service.apply_reports(StatusReport(**r) for r in batch)


def test_two_engines_two_branches_both_land(store, db_url):
    service = Service(store, None, Settings(database_url=db_url))
    service.deploy(FORK_JOIN)
    pids = [str(service.start_process(ModelRef(key="fork_join"), f"p{i}", {}).pk) for i in range(ROUNDS)]
    per_engine: list[list[list[dict]]] = [[], []]
    for pid in pids:
        tasks = {t.name: t for t in service.list_tasks(pid)}
        assert set(tasks) == {"a", "b"}
        for engine, name in enumerate(("a", "b")):
            t = tasks[name]
            per_engine[engine].append([
                {"process": t.process_pk, "task": t.pk, "attempt": 1, "status": s, "at": time.time(),
                 "outputs": {"by": name} if s == "monitor.success" else None}
                for s in ("start.begin", "start.success", "monitor.success")])
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_engine, args=(db_url, barrier, batches)) for batches in per_engine]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for pid in pids:
        tasks = service.list_tasks(pid)
        by_name = {t.name: t for t in tasks}
        assert by_name["a"].status == by_name["b"].status == "monitor.success"
        assert [t.name for t in tasks].count("c") == 1, [t.name for t in tasks]  # the join fired once
        assert service.get_process(pid).status == "running"
