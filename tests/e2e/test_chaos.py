"""Nothing lost: a worker killed mid-task, Redis restarted with jobs queued, every report
delivered three times in shuffled order. Real engine and worker processes, a Redis server of
the test's own (so it can be restarted), a short task lease so the reconciler steps in fast.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from orchestrator.redis_server import EmbeddedRedis
from orchestrator.states import TASK_TRANSITIONS, TaskStatus
from tests.bpmn import HEAD, chain, service_task
from tests.conftest import scratch_postgres
from tests.e2e.stack import Stack, sqlite_db, wait_http

pytestmark = pytest.mark.e2e

LEASE_S = 3
RAW, STATUS = "orch:raw", "orch:status"


class Duplicator:
    """Stands between the workers and the engine: every report arrives three times, shuffled."""

    def __init__(self, url: str, copies: int = 3):
        self.url = url
        self.copies = copies
        self.stop = threading.Event()
        self.forwarded = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = "0-0"
        rng = random.Random(1)
        client = None
        while not self.stop.is_set():
            try:
                client = client or redis.Redis.from_url(self.url)
                resp = client.xread({RAW: last}, count=200, block=100)
            except redis.ConnectionError:
                client = None
                time.sleep(0.2)
                continue
            if not resp:
                continue
            entries = resp[0][1]
            last = entries[-1][0]
            copies = [fields for _, fields in entries] * self.copies
            rng.shuffle(copies)
            pipe = client.pipeline(transaction=False)
            for fields in copies:
                pipe.xadd(STATUS, fields)
            pipe.execute()
            self.forwarded += len(entries)


class Chaos:
    def __init__(self, stack: Stack, server: EmbeddedRedis, dup: Duplicator):
        self.stack, self.server, self.dup = stack, server, dup

    def restart_worker(self) -> None:
        s = self.stack
        s.env = {**s.env, "ORCH_STATUS_STREAM": RAW}
        s.spawn("worker", "worker", "--stones", "ShellStone,NoopStone,SleepStone", "--concurrency", "2")
        s.env = {**s.env, "ORCH_STATUS_STREAM": STATUS}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def chaos(request, tmp_path_factory) -> Iterator[Chaos]:
    tmp = tmp_path_factory.mktemp(f"chaos-{request.param}")
    server = EmbeddedRedis(data_dir=tmp / "redis").start()
    with (scratch_postgres() if request.param == "postgresql" else sqlite_db(tmp)) as db_url:
        env = {**os.environ, "ORCH_DATABASE_URL": db_url, "ORCH_REDIS_URL": server.url, "ORCH_VAR_DIR": str(tmp),
               "ORCH_STATUS_STREAM": STATUS, "ORCH_LEASE_S": str(LEASE_S), "PYTHONUNBUFFERED": "1"}
        s = Stack(env, tmp)
        s.cli("db", "upgrade")
        (tmp / "runs").mkdir()
        model = tmp / "slow.bpmn"
        # each task's command leaves one line per run: a start that ran twice would show
        step = "&apos;sleep 1; echo ran >> {runs}/&apos; + tag + &apos;-{name}&apos;".format(
            runs=tmp / "runs", name="{name}")
        model.write_text(chain("slow", *[(n, "ShellStone", {"command": step.format(name=n)}) for n in "abc"]))
        s.cli("deploy", str(model))
        fork = tmp / "fork.bpmn"
        fork.write_text(FORK)
        s.cli("deploy", str(fork))
        s.spawn("api", "api", "--port", str(s.port))
        s.spawn("engine", "engine")
        # workers report to RAW; the duplicator forwards every report three times to the engine
        c = Chaos(s, server, Duplicator(server.url))
        c.restart_worker()
        try:
            wait_http(s)
            yield c
        finally:
            c.dup.stop.set()
            s.stop()
            c.server.stop()


FORK = (HEAD + '<bpmn:process id="fork" isExecutable="true"><bpmn:startEvent id="s"/>'
        '<bpmn:parallelGateway id="split"/><bpmn:parallelGateway id="join"/><bpmn:endEvent id="e"/>'
        + service_task("a", "NoopStone") + service_task("b", "SleepStone", {"duration": "0.3"})
        + service_task("c", "NoopStone")
        + "".join(f'<bpmn:sequenceFlow id="f{i}" sourceRef="{x}" targetRef="{y}"/>' for i, (x, y) in enumerate(
            [("s", "split"), ("split", "a"), ("split", "b"), ("a", "join"), ("b", "join"), ("join", "c"),
             ("c", "e")])) + "</bpmn:process></bpmn:definitions>")


def start_many(s: Stack, key: str, n: int, prefix: str) -> list[str]:
    return [s.start(key, {"tag": f"{prefix}{i}"})["processInstanceId"] for i in range(n)]


def assert_clean_histories(s: Stack, pid: str) -> None:
    """Every task's history is a legal path through the transition table, attempt by attempt."""
    for task in s.tasks(pid):
        history = requests.get(f"{s.base}/task/{task['taskId']}/history", timeout=10).json()
        for _attempt, events in itertools.groupby(history, key=lambda h: h["attempt"]):
            current = None
            for h in events:
                new = TaskStatus(h["status"])
                assert new in TASK_TRANSITIONS[current], f"task {task['taskId']}: {current} -> {new}"
                current = new


def runs_per_task(s: Stack) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in (s.logs / "runs").iterdir()}


def test_every_report_three_times_in_shuffled_order(chaos):
    s, dup = chaos.stack, chaos.dup
    pids = [s.start("fork", {})["processInstanceId"] for _ in range(10)]
    for pid in pids:
        assert s.wait(pid, timeout=60)["processStatus"] == "success"
        assert_clean_histories(s, pid)
        assert len(s.tasks(pid)) == 3
    assert dup.forwarded > 0


def test_a_worker_killed_mid_task_loses_nothing(chaos):
    s = chaos.stack
    pids = start_many(s, "slow", 4, "kill")
    deadline = time.monotonic() + 30  # kill it once it holds work: commands running, polls waiting
    while not any(t["status"] == "monitor.begin" for pid in pids for t in s.tasks(pid)):
        assert time.monotonic() < deadline, "the worker never took the tasks"
        time.sleep(0.1)
    s.kill("worker")
    chaos.restart_worker()
    for pid in pids:
        proc = s.wait(pid, timeout=90)
        assert proc["processStatus"] == "success", proc
        assert_clean_histories(s, pid)
    runs = runs_per_task(s)
    for i in range(4):
        for name in "abc":
            assert runs[f"kill{i}-{name}"] == 1, runs  # no start ran twice
    # the polls the killed worker held were re-sent by the reconciler once their lease ran out
    assert sum(t["redispatches"] for pid in pids for t in s.tasks(pid)) >= 1


def test_redis_restarted_with_jobs_queued_loses_nothing(chaos):
    s, server = chaos.stack, chaos.server
    s.kill("worker")  # jobs will wait in Redis
    pids = start_many(s, "slow", 3, "restart")
    client = redis.Redis.from_url(server.url)
    assert sum(1 for raw in client.lrange("stone.ShellStone", 0, -1)
               if str(json.loads(base64.b64decode(json.loads(raw)["body"]))[1]["job"]["process"]) in pids) == 3
    server.stop()  # no persistence: the queued jobs and the status stream are gone
    chaos.server = EmbeddedRedis(data_dir=server.data_dir, port=server.port).start()
    assert redis.Redis.from_url(chaos.server.url).llen("stone.ShellStone") == 0
    chaos.restart_worker()
    for pid in pids:
        proc = s.wait(pid, timeout=90)
        assert proc["processStatus"] == "success", proc
        assert_clean_histories(s, pid)
    runs = runs_per_task(s)
    assert all(runs[f"restart{i}-{n}"] == 1 for i in range(3) for n in "abc"), runs
    first = s.tasks(pids[0])[0]
    assert json.loads(first["outputs"])["exitCode"] == 0
    assert first["redispatches"] >= 1
