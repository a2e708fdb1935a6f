"""The first seed's request on real (local) cloud resources: MachineStone workers against a
moto server, the way ``make run`` runs them. Each test asks the cloud what is left.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import boto3
import pytest
import redis
import requests

from orchestrator.moto_server import MotoServer
from stones.aws import PROCESS_TAG
from tests.conftest import EXAMPLES
from tests.e2e.stack import Stack, sqlite_db, wait_http

pytestmark = pytest.mark.e2e

SEED = {"projectId": "11111", "regionId": "bcc", "vpcId": "vpc-509A87BA", "storageId": "storage-320AA6D8",
        "imageId": "ami-2F051345", "securityGroupName": "default", "expireTime": "-1", "keypairName": "tt6666",
        "disableApiTermination": "false", "slaveNum": "6", "buyNum": "1", "Bingo::RS::FRONT::RSBILLING": {},
        "master-1a": {"instanceType": "m2.large"}, "slave-": {"instanceType": "m2.large"},
        "subnetId": "subnet-439A34CC"}


@pytest.fixture(scope="module")
def cloud(redis_url, tmp_path_factory) -> Iterator[tuple[Stack, object]]:
    tmp = tmp_path_factory.mktemp("cloud")
    with MotoServer(tmp / "moto") as moto, sqlite_db(tmp) as db_url:
        redis.Redis.from_url(redis_url).flushdb()
        env = {**os.environ, "ORCH_DATABASE_URL": db_url, "ORCH_REDIS_URL": redis_url, "ORCH_VAR_DIR": str(tmp),
               "ORCH_STATUS_STREAM": "orch:status:cloud", "ORCH_AWS_ENDPOINT_URL": moto.url,
               "PYTHONUNBUFFERED": "1"}
        s = Stack(env, tmp)
        s.cli("db", "upgrade")
        assert "key=seed_cluster" in s.cli("deploy", str(EXAMPLES / "seed_cluster.bpmn"))
        s.spawn("api", "api", "--port", str(s.port))
        s.spawn("engine", "engine")
        s.spawn("worker", "worker", "--stones", "MachineStone,NoopStone", "--concurrency", "2")
        ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test")
        try:
            wait_http(s)
            yield s, ec2
        finally:
            s.stop()


def instances(ec2, process_id: str, states=("pending", "running", "stopping", "stopped", "shutting-down")):
    """Instances of one process, by the tag MachineStone puts on them."""
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": list(states)}]):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(PROCESS_TAG) == process_id:
                    found.append((inst["InstanceId"], tags, inst["State"]["Name"]))
    return found


def test_mock_true_only_mocks(cloud):
    s, ec2 = cloud
    proc = s.wait(s.start("seed_cluster", {**SEED, "SipRS::Mock": True}, name="test")["processInstanceId"])
    assert proc["processStatus"] == "success", proc
    tasks = s.tasks(proc["processInstanceId"])
    assert len(tasks) == 8 and {t["event"] for t in tasks} == {"mock"}
    assert {t["status"] for t in tasks if t["stone"] == "MachineStone"} == {"mock.success"}
    assert instances(ec2, proc["processInstanceId"], states=("pending", "running", "terminated")) == []


def test_mock_false_creates_a_master_and_slavenum_slaves(cloud):
    s, ec2 = cloud
    proc = s.wait(s.start("seed_cluster", {**SEED, "SipRS::Mock": False}, name="test")["processInstanceId"])
    assert proc["processStatus"] == "success", proc
    pid = proc["processInstanceId"]
    running = instances(ec2, pid, states=("running",))
    roles = sorted(tags["role"] for _, tags, _ in running)
    assert roles == ["master"] + ["slave"] * 6
    outputs = json.loads(proc["outputs"])
    assert outputs["masterInstanceId"] in {i for i, _, _ in running}
    assert sorted(outputs["slaveInstanceIds"]) == sorted(i for i, tags, _ in running if tags["role"] == "slave")
    # ... and the delete process terminates everything it made
    assert requests.put(f"{s.base}/process/{pid}/delete", timeout=10).status_code == 200
    assert s.wait(pid, timeout=60)["processStatus"] == "deleted"
    assert instances(ec2, pid, states=("running", "pending", "stopped")) == []
    assert len(instances(ec2, pid, states=("terminated", "shutting-down"))) == 7


def test_a_failure_in_one_slave_rolls_all_of_them_back(cloud):
    s, ec2 = cloud
    variables = {**SEED, "SipRS::Mock": False, "slave-3": {"failAfterStart": True}}
    pid = s.start("seed_cluster", variables, name="test")["processInstanceId"]
    proc = s.wait(pid, timeout=90)
    assert proc["processStatus"] == "rollbacked", proc
    assert "injected failure" in proc["reason"]
    rollback = s.tasks(proc["rollbackProcessInstanceId"])
    assert len(rollback) == 7 and {t["status"] for t in rollback} == {"rollback.success"}
    time.sleep(0.5)
    assert instances(ec2, pid, states=("running", "pending", "stopped")) == []  # no instance left running
    assert len(instances(ec2, pid, states=("terminated", "shutting-down"))) == 7
    assert not any(t["name"] == "billing" for t in s.tasks(pid))
