"""End to end: real ``orchestrator api``, ``engine`` and ``worker`` processes, driven over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.bpmn import chain
from tests.conftest import EXAMPLES, scratch_postgres
from tests.e2e.stack import Stack, sqlite_db, wait_http

pytestmark = pytest.mark.e2e

CLUSTER_VARS = {"projectId": "11111", "regionId": "bcc", "vpcId": "vpc-509A87BA", "subnetId": "subnet-439A34CC",
                "imageId": "ami-2F051345", "slaveNum": "6", "master-1a": {"instanceType": "m2.large"},
                "slave-": {"instanceType": "m2.large"}, "Bingo::RS::FRONT::RSBILLING": {}, "SipRS::Mock": False}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, redis_url, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    with (scratch_postgres() if request.param == "postgresql" else sqlite_db(tmp)) as db_url:
        stream = f"orch:status:e2e:{request.param}"
        redis.Redis.from_url(redis_url).flushdb()
        env = {**os.environ, "ORCH_DATABASE_URL": db_url, "ORCH_REDIS_URL": redis_url, "ORCH_VAR_DIR": str(tmp),
               "ORCH_STATUS_STREAM": stream, "ORCH_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        s = Stack(env, tmp)
        s.cli("db", "upgrade")
        for f in ("noop_chain.bpmn", "parallel_disks.bpmn", "provision_cluster.bpmn"):
            assert "deployed" in s.cli("deploy", str(EXAMPLES / f))
        failing = tmp / "failing.bpmn"
        failing.write_text(chain("failing", ("ok", "NoopStone", {}),
                                 ("boom", "ShellStone", {"command": "&apos;echo broken >&amp;2; exit 3&apos;"}),
                                 ("never", "NoopStone", {})))
        s.cli("deploy", str(failing))
        needs_fix = tmp / "needs_fix.bpmn"
        needs_fix.write_text(chain("needs_fix", ("check", "ShellStone", {"command": "&apos;test -f &apos; + marker"})))
        s.cli("deploy", str(needs_fix))
        sleepy = tmp / "sleepy.bpmn"
        sleepy.write_text(chain("sleepy", ("nap", "SleepStone", {"duration": "60"})))
        s.cli("deploy", str(sleepy))
        shell = tmp / "shell.bpmn"
        shell.write_text(chain("shell", ("hello", "ShellStone", {"command": "&apos;echo hello-$((6*7))&apos;"})))
        s.cli("deploy", str(shell))
        s.spawn("api", "api", "--port", str(s.port))
        s.spawn("engine", "engine")
        s.spawn("worker", "worker", "--stones", "NoopStone,SleepStone,ShellStone", "--concurrency", "2")
        try:
            wait_http(s)
            yield s
        finally:
            s.stop()


def test_sequential_model_to_success(stack):
    pid = stack.start("noop_chain", {})["processInstanceId"]
    proc = stack.wait(pid)
    assert proc["processStatus"] == "success", proc
    tasks = stack.tasks(pid)
    assert [t["name"] for t in tasks] == [f"step {i}" for i in range(1, 6)]
    assert all(t["status"] == "monitor.success" and t["endTime"] for t in tasks)
    history = requests.get(f"{stack.base}/task/{tasks[0]['taskId']}/history", timeout=5).json()
    steps = ["start.begin", "start.success", "monitor.begin", "monitor.success"]
    # produce.success is recorded unless the worker's start.begin overtook the relay's bookkeeping
    assert [h["status"] for h in history] in (["produce.success", *steps], steps)


def test_parallel_gateway_model_to_success(stack):
    pid = stack.start("parallel_disks", {"imageId": "ami-1", "vmOutputs": {"ip": "10.0.0.9"},
                                         "billing": "yes"})["processInstanceId"]
    proc = stack.wait(pid)
    assert proc["processStatus"] == "success", proc
    tasks = stack.tasks(pid)
    assert sorted(t["namespace"] or "-" for t in tasks) == ["-", "disk-a", "disk-b", "vm"]
    native = json.loads(proc["nativeOutputs"])
    assert native["vm"]["ip"] == "10.0.0.9" and native["disk-a"]["stone"] == "NoopStone"


def test_the_seeds_request_runs_six_slaves_in_parallel(stack):
    pid = stack.start("provision_cluster", CLUSTER_VARS, name="test")["processInstanceId"]
    proc = stack.wait(pid)
    assert proc["processStatus"] == "success", proc
    tasks = stack.tasks(pid)
    slaves = [t for t in tasks if t["name"] == "slave"]
    assert sorted(t["namespace"] for t in slaves) == [f"slave-{i}" for i in range(1, 7)]
    assert all(json.loads(t["params"])["instanceType"] == "m2.large" for t in slaves)
    # in parallel: every slave was created before any of them ended
    assert max(t["createTime"] for t in slaves) <= min(t["endTime"] for t in slaves)
    master = next(t for t in tasks if t["namespace"] == "master-1a")
    assert master["progress"] == "100"
    # outputs: the model's output template (examples/provision_cluster.outputs.j2) over the final data
    outputs = json.loads(proc["outputs"])
    assert outputs["master"]["instanceType"] == "m2.large" and len(outputs["slaves"]) == 6
    assert all(slave == {"slept": 0.2} for slave in outputs["slaves"])


def test_shell_stone_outputs_reach_the_process(stack):
    proc = stack.wait(stack.start("shell", {})["processInstanceId"])
    assert proc["processStatus"] == "success", proc
    (task,) = stack.tasks(proc["processInstanceId"])
    outputs = json.loads(task["outputs"])
    assert outputs["exitCode"] == 0 and outputs["stdout"].strip() == "hello-42"


def test_a_failing_stone_fails_the_process_and_rolls_it_back(stack):
    pid = stack.start("failing", {})["processInstanceId"]
    proc = stack.wait(pid)
    assert proc["processStatus"] == "rollbacked", proc
    assert "exited with 3" in proc["reason"] and "broken" in proc["reason"]
    tasks = stack.tasks(pid)
    assert [(t["name"], t["status"]) for t in tasks] == [("ok", "monitor.success"), ("boom", "monitor.failed")]
    rollback = stack.tasks(proc["rollbackProcessInstanceId"])
    assert [(t["name"], t["status"]) for t in rollback] == [("boom", "rollback.success"), ("ok", "rollback.success")]
    # the ShellStone's rollback removed the work directory its start made
    boom = tasks[1]
    assert not (stack.logs / "shell" / f"{boom['id']}-1").exists()
    assert (stack.logs / "shell").is_dir()


def test_debug_rerun_after_fixing_the_cause(stack):
    marker = stack.logs / "fixed"
    r = requests.post(f"{stack.base}/process", json={"key": "needs_fix", "processName": "dbg", "debug": True,
                                                     "variables": {"marker": str(marker)}}, timeout=10)
    pid = r.json()["processInstanceId"]
    proc = stack.wait(pid)
    assert proc["processStatus"] == "debug", proc
    failed = next(t for t in stack.tasks(pid) if t["status"] == "monitor.failed")
    marker.write_text("ok")
    r = requests.put(f"{stack.base}/task/{failed['taskId']}/reRun", timeout=10)
    assert r.status_code == 200 and r.json()["attempt"] == 2
    assert stack.wait(pid)["processStatus"] == "success"


def test_cancel_a_long_running_process(stack):
    pid = stack.start("sleepy", {})["processInstanceId"]
    deadline = time.monotonic() + 20
    while stack.tasks(pid)[0]["status"] != "monitor.begin":
        assert time.monotonic() < deadline, stack.tasks(pid)
        time.sleep(0.1)
    r = requests.put(f"{stack.base}/process/{pid}/cancel", timeout=10)
    assert r.status_code == 200 and r.json()["processStatus"] == "canceling"
    proc = stack.wait(pid, timeout=30)
    assert proc["processStatus"] == "canceled"
    assert stack.tasks(pid)[0]["status"] == "canceled"
    assert [t["status"] for t in stack.tasks(proc["cancelProcessInstanceId"])] == ["cancel.success"]
    assert requests.put(f"{stack.base}/process/{pid}/cancel", timeout=10).status_code == 409


def test_delete_a_finished_process(stack):
    pid = stack.start("noop_chain", {})["processInstanceId"]
    assert stack.wait(pid)["processStatus"] == "success"
    r = requests.put(f"{stack.base}/process/{pid}/delete", timeout=10)
    assert r.status_code == 200
    proc = stack.wait(pid)
    assert proc["processStatus"] == "deleted"
    assert [t["name"] for t in stack.tasks(proc["deleteProcessInstanceId"])] == [f"step {i}" for i in (5, 4, 3, 2, 1)]


def test_mock_mode_has_no_side_effects(stack):
    proc = stack.wait(stack.start("shell", {"SipRS::Mock": True})["processInstanceId"])
    assert proc["processStatus"] == "success"
    (task,) = stack.tasks(proc["processInstanceId"])
    assert task["status"] == "mock.passed" and task["event"] == "mock"


def test_many_processes_at_once_all_finish(stack):
    pids = [stack.start("noop_chain", {"n": i})["processInstanceId"] for i in range(40)]
    assert {stack.wait(pid)["processStatus"] for pid in pids} == {"success"}
