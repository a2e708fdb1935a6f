"""MachineStone and StackStone against a real moto server (one per session, emptied before each test).

The stones are called the way the worker calls them: ``start`` with an empty state, then
``monitor`` with what start returned, once per poll, and ``rollback``/``delete`` with the
state of the original task. moto runs with AMI and instance-type validation on, so a bad
image id or instance type fails the way AWS would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from orchestrator.moto_server import MotoServer
from stones.aws import KEY_TAG, map_aws_error
from stones.base import Done, Failed, Pending, RetryableError, StoneContext, TerminalError
from stones.machine import MachineStone
from stones.registry import builtin_stones
from stones.stack import StackStone, request_token, stack_name, template_body

REGION = "us-east-1"
KEY = "0b6f3c1e-6d0c-4a55-9a57-5f1c2a3b4c5d-1"
OTHER_KEY = "9a8b7c6d-1111-2222-3333-444455556666-1"


# One small AMI catalogue instead of moto's ~1,300 images, which it reloads after every reset.
IMAGE_ID = "ami-0a1b2c3d4e5f60718"
AMIS = [{
    "ami_id": IMAGE_ID, "name": "orchestrator-test", "description": "test image", "owner_id": "137112412989",
    "public": True, "virtualization_type": "hvm", "architecture": "x86_64", "state": "available",
    "platform": None, "image_type": "machine", "hypervisor": "xen", "root_device_name": "/dev/xvda",
    "root_device_type": "ebs", "sriov": "simple",
}]  # fmt: skip


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    data_dir = tmp_path_factory.mktemp("moto")
    amis = data_dir / "amis.json"
    amis.write_text(json.dumps(AMIS))
    env = {
        "MOTO_AMIS_PATH": str(amis),
        "MOTO_ENABLE_AMI_VALIDATION": "true",
        "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    }
    with MotoServer(data_dir, env=env) as server:
        yield server


class Aws:
    """Direct clients on the moto server, to check what the stones did."""

    def __init__(self, url: str):
        kw: dict[str, Any] = {"endpoint_url": url, "region_name": REGION,
                              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.url = url
        self.ec2 = boto3.client("ec2", **kw)
        self.cfn = boto3.client("cloudformation", **kw)

    def instances(self, *states: str) -> list[dict[str, Any]]:
        filters = [{"Name": "instance-state-name", "Values": list(states)}] if states else []
        reply = self.ec2.describe_instances(Filters=filters)
        return [i for r in reply["Reservations"] for i in r["Instances"]]

    def instance_states(self, ids: list[str]) -> dict[str, str]:
        return {i["InstanceId"]: i["State"]["Name"] for i in self.instances() if i["InstanceId"] in ids}

    def live_stacks(self) -> list[dict[str, Any]]:
        # Summaries: moto's DescribeStacks crashes on a half-made stack whose outputs refer to a failed resource.
        pages = self.cfn.get_paginator("list_stacks").paginate()
        return [s for p in pages for s in p["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]

    def vpc_ids(self) -> set[str]:
        return {v["VpcId"] for v in self.ec2.describe_vpcs()["Vpcs"]}


@pytest.fixture
def cloud(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    moto_server.reset()
    monkeypatch.setenv("ORCH_AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Cached clients are keyed by endpoint and region, so they are safe to keep across tests.
    yield Aws(moto_server.url)


@pytest.fixture(scope="session")
def image_id(moto_server: MotoServer) -> str:
    images = Aws(moto_server.url).ec2.describe_images(ImageIds=[IMAGE_ID])["Images"]
    assert [i["ImageId"] for i in images] == [IMAGE_ID]
    return IMAGE_ID


def make_ctx(params: dict[str, Any], key: str = KEY, state: dict[str, Any] | None = None,
             task_id: str = "7", namespace: str | None = "master-1a") -> StoneContext:
    if namespace is not None:
        params = {"namespace": namespace, **params}
    return StoneContext(task_id=task_id, process_instance_id="3", name="task", namespace=namespace,
                        params=params, idempotency_key=key, state=dict(state or {}))


def poll(stone: Any, ctx: StoneContext, max_polls: int = 20) -> Done | Failed:
    """monitor until it stops being Pending, as the worker's re-enqueued polls would."""
    for _ in range(max_polls):
        result = stone.monitor(ctx)
        if not isinstance(result, Pending):
            return result
        if result.state is not None:
            ctx.state = result.state
        ctx.poll += 1
        time.sleep(0.05)
    pytest.fail(f"still pending after {max_polls} polls")


def no_client(service: str, params: dict[str, Any]) -> Any:
    raise AssertionError(f"mock must not build an AWS client (asked for {service})")


# ------------------------------------------------------------------ MachineStone

def test_both_stones_are_built_in() -> None:
    stones = builtin_stones()
    assert stones["MachineStone"] is MachineStone and stones["StackStone"] is StackStone


def test_machine_start_then_monitor_until_running(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    ctx = make_ctx({"imageId": image_id, "tags": {"team": "infra"}})
    state = stone.start(ctx)
    assert state["region"] == REGION and len(state["instanceIds"]) == 1

    ctx = make_ctx(ctx.params, state=state)
    result = poll(stone, ctx)
    assert isinstance(result, Done), result
    out = result.outputs
    assert out["instanceId"] == state["instanceIds"][0] and out["instanceIds"] == state["instanceIds"]
    assert out["state"] == "running" and out["region"] == REGION
    assert out["privateIpAddress"] and out["privateIpAddress"].count(".") == 3

    (inst,) = cloud.instances()
    assert inst["InstanceType"] == "t3.micro" and inst["ImageId"] == image_id
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["Name"] == "master-1a-7" and tags["team"] == "infra" and tags[KEY_TAG] == KEY


def test_machine_stays_pending_until_every_instance_runs(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    ctx = make_ctx({"imageId": image_id, "count": "2"})  # BPMN text fields give strings
    ctx.state = stone.start(ctx)
    ids = ctx.state["instanceIds"]
    assert len(ids) == 2
    # moto launches instances straight into "running": stop one to see a poll still waiting.
    cloud.ec2.stop_instances(InstanceIds=[ids[1]])
    result = stone.monitor(ctx)
    assert result == Pending(progress="pending 1/2 running")
    cloud.ec2.start_instances(InstanceIds=[ids[1]])
    result = poll(stone, ctx)
    assert isinstance(result, Done) and result.outputs["instanceIds"] == ids
    assert len(result.outputs["privateIpAddresses"]) == 2


def test_machine_duplicate_start_returns_the_same_instances(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    params = {"imageId": image_id}
    first = stone.start(make_ctx(params))
    # A duplicate delivery of the same job: same key, the worker has no state yet.
    second = stone.start(make_ctx(params))
    assert second["instanceIds"] == first["instanceIds"]
    assert len(cloud.instances()) == 1
    # A different key is a different launch: the check above can tell them apart.
    third = stone.start(make_ctx(params, key=OTHER_KEY))
    assert third["instanceIds"] != first["instanceIds"]
    assert len(cloud.instances()) == 2


def test_machine_rollback_terminates(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    params = {"imageId": image_id, "count": 2}
    state = stone.start(make_ctx(params))
    assert len(cloud.instances("running")) == 2
    stone.rollback(make_ctx(params, state=state))
    assert set(cloud.instance_states(state["instanceIds"]).values()) == {"terminated"}
    assert cloud.instances("pending", "running") == []


def test_machine_rollback_without_state_finds_instances_by_tag(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    params = {"imageId": image_id}
    lost = stone.start(make_ctx(params))  # the reply is "lost": rollback gets no state
    bystander = stone.start(make_ctx(params, key=OTHER_KEY))
    stone.rollback(make_ctx(params, state={}))
    assert cloud.instance_states(lost["instanceIds"]) == {lost["instanceIds"][0]: "terminated"}
    assert cloud.instance_states(bystander["instanceIds"]) == {bystander["instanceIds"][0]: "running"}


def test_machine_cancel_terminates(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    state = stone.start(make_ctx({"imageId": image_id}))
    stone.cancel(make_ctx({"imageId": image_id}, state=state))
    assert cloud.instances("pending", "running") == []


def test_machine_delete_tolerates_already_gone(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    params = {"imageId": image_id}
    state = stone.start(make_ctx(params))
    cloud.ec2.terminate_instances(InstanceIds=state["instanceIds"])
    stone.delete(make_ctx(params, state=state))
    stone.delete(make_ctx(params, state=state))
    # An id AWS never heard of, and a task that never launched anything.
    stone.delete(make_ctx(params, state={"instanceIds": ["i-0123456789abcdef0"], "region": REGION}))
    stone.delete(make_ctx(params, key=OTHER_KEY, state={}))
    assert set(cloud.instance_states(state["instanceIds"]).values()) == {"terminated"}


def test_machine_terminated_behind_our_back_fails_monitor(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    ctx = make_ctx({"imageId": image_id})
    ctx.state = stone.start(ctx)
    cloud.ec2.terminate_instances(InstanceIds=ctx.state["instanceIds"])
    result = stone.monitor(ctx)
    assert isinstance(result, Failed) and result.code == "InstanceTerminated"
    assert ctx.state["instanceIds"][0] in result.reason


def test_machine_fail_after_start_leaves_instances_for_rollback(cloud: Aws, image_id: str) -> None:
    stone = MachineStone()
    params = {"imageId": image_id, "failAfterStart": "true"}
    ctx = make_ctx(params)
    ctx.state = stone.start(ctx)
    result = poll(stone, ctx)
    assert isinstance(result, Failed) and "injected failure" in result.reason
    assert len(cloud.instances("running")) == 1  # the failure came after the launch
    stone.rollback(make_ctx(params, state=ctx.state))
    assert cloud.instances("pending", "running") == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"imageId": "ami-2F051345"}, "InvalidAMIID.NotFound"),  # the seed's image: not in moto's catalogue
        # The seed's type, passed on as given (AWS itself answers InvalidParameterValue).
        ({"instanceType": "m2.large"}, "InvalidInstanceType.NotFound"),
        ({"subnetId": "subnet-439A34CC"}, "InvalidSubnetID.NotFound"),
        ({"securityGroupIds": "sg-0123456789abcdef0"}, "InvalidGroup.NotFound"),
    ],
)
def test_machine_aws_rejections_are_terminal_with_the_aws_code(
    cloud: Aws, image_id: str, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(TerminalError) as info:
        MachineStone().start(make_ctx({"imageId": image_id, **params}))
    assert info.value.code == code
    assert code in info.value.reason and "RunInstances" in info.value.reason
    assert cloud.instances() == []


@pytest.mark.parametrize("params", [{}, {"imageId": ""}, {"imageId": "ami-1", "count": 0},
                                    {"imageId": "ami-1", "count": True}, {"imageId": "ami-1", "tags": ["x"]}])
def test_machine_bad_params_fail_before_any_call(params: dict[str, Any]) -> None:
    with pytest.raises(TerminalError):
        MachineStone(client_factory=no_client).start(make_ctx(params))


def test_machine_unreachable_endpoint_is_retryable(cloud: Aws, image_id: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RetryableError) as info:
        MachineStone().start(make_ctx({"imageId": image_id}))
    assert info.value.code == "ConnectionError"


def test_machine_mock_makes_no_aws_call(cloud: Aws, image_id: str) -> None:
    stone = MachineStone(client_factory=no_client)
    out = stone.mock(make_ctx({"imageId": image_id, "count": 2}))
    assert out["instanceId"].startswith("i-mock") and len(out["instanceId"]) == len("i-") + 17
    assert out["instanceIds"][0] == out["instanceId"] and len(set(out["instanceIds"])) == 2
    assert out["state"] == "running" and out["region"] == REGION
    assert stone.mock(make_ctx({"imageId": image_id, "count": 2})) == out  # deterministic per key
    assert stone.mock(make_ctx({"imageId": image_id, "count": 2}, key=OTHER_KEY))["instanceId"] != out["instanceId"]
    assert MachineStone.has_mock()
    assert cloud.instances() == []


# ------------------------------------------------------------------ error mapping

def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response: Any = {"Error": {"Code": code, "Message": f"{code} happened"},
                     "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "RunInstances")


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (_client_error("RequestLimitExceeded", 503), RetryableError, "RequestLimitExceeded"),
        (_client_error("Throttling", 400), RetryableError, "Throttling"),  # CloudFormation throttles with 400
        (_client_error("InternalError", 500), RetryableError, "InternalError"),
        (_client_error("SomethingNew", 502), RetryableError, "SomethingNew"),
        (_client_error("InvalidAMIID.NotFound", 400), TerminalError, "InvalidAMIID.NotFound"),
        (_client_error("UnauthorizedOperation", 403), TerminalError, "UnauthorizedOperation"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), RetryableError, "ConnectionError"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), RetryableError, "ConnectionError"),
        (ResponseParserError("<html>"), RetryableError, "ResponseParserError"),
        (botocore.exceptions.NoCredentialsError(), TerminalError, "NoCredentials"),
    ],
)
def test_map_aws_error(exc: Exception, kind: type, code: str) -> None:
    mapped = map_aws_error(exc, "ec2 RunInstances")
    assert type(mapped) is kind and mapped.code == code
    assert mapped.reason.startswith("ec2 RunInstances failed")


# ------------------------------------------------------------------ StackStone

def _template(image_id: str, version: str = "v1.0") -> dict[str, Any]:
    # Resource types moto's CloudFormation really creates (an unknown type is silently skipped).
    return {
        "AWSTemplateFormatVersion": version,
        "Description": "AwsCloud",
        "Parameters": {"Cidr": {"Type": "String", "Default": "10.0.0.0/16"}},
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": {"Ref": "Cidr"}}},
            "Subnet": {"Type": "AWS::EC2::Subnet",
                       "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.1.1.0/24"}},
            "Group": {"Type": "AWS::EC2::SecurityGroup",
                      "Properties": {"GroupDescription": "web", "VpcId": {"Ref": "Vpc"}}},
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Server": {"Type": "AWS::EC2::Instance",
                       "Properties": {"ImageId": image_id, "InstanceType": "t3.micro",
                                      "SubnetId": {"Ref": "Subnet"}}},
        },
        "Outputs": {
            "VpcId": {"Value": {"Ref": "Vpc"}},
            "InstanceId": {"Value": {"Ref": "Server"}},
            "PrivateIp": {"Value": {"Fn::GetAtt": ["Server", "PrivateIp"]}},
            "BucketName": {"Value": {"Ref": "Bucket"}},
        },
    }


def _stack_params(image_id: str, **extra: Any) -> dict[str, Any]:
    # A JSON string, as in the first seed's task params.
    return {"template": json.dumps(_template(image_id)), "parameters": {"Cidr": "10.1.0.0/16"}, **extra}


def test_stack_create_then_monitor_until_complete(cloud: Aws, image_id: str) -> None:
    stone = StackStone()
    ctx = make_ctx(_stack_params(image_id))
    state = stone.start(ctx)
    assert state["stackName"] == "orch-master-1a-7" and state["stackId"].startswith("arn:aws:cloudformation:")

    ctx = make_ctx(ctx.params, state=state)
    result = poll(stone, ctx)
    assert isinstance(result, Done), result
    out = result.outputs
    assert out["stackId"] == state["stackId"] and out["stackName"] == "orch-master-1a-7"
    assert out["VpcId"].startswith("vpc-") and out["InstanceId"].startswith("i-")
    assert out["PrivateIp"].startswith("10.1.1.") and out["BucketName"]
    # The parameter reached the template, and the resources are real.
    (vpc,) = cloud.ec2.describe_vpcs(VpcIds=[out["VpcId"]])["Vpcs"]
    assert vpc["CidrBlock"] == "10.1.0.0/16"
    assert cloud.instance_states([out["InstanceId"]]) == {out["InstanceId"]: "running"}
    (stack,) = cloud.cfn.describe_stacks(StackName=state["stackId"])["Stacks"]
    assert {"Key": KEY_TAG, "Value": KEY} in stack["Tags"]


def test_stack_duplicate_start_is_idempotent(cloud: Aws, image_id: str) -> None:
    stone = StackStone()
    params = _stack_params(image_id)
    first = stone.start(make_ctx(params))
    second = stone.start(make_ctx(params))
    assert second == first
    assert [s["StackName"] for s in cloud.live_stacks()] == ["orch-master-1a-7"]
    assert len(cloud.instances()) == 1


def test_stack_name_clash_with_another_tasks_stack_is_refused(cloud: Aws, image_id: str) -> None:
    stone = StackStone()
    params = _stack_params(image_id, stackName="shared-name")
    theirs = stone.start(make_ctx(params, key=OTHER_KEY))
    with pytest.raises(TerminalError) as info:
        stone.start(make_ctx(params))
    assert info.value.code == "AlreadyExistsException"
    # Not ours, so neither adopted nor touched by a rollback that has no state.
    stone.rollback(make_ctx(params, state={}))
    assert [s["StackId"] for s in cloud.live_stacks()] == [theirs["stackId"]]


def test_stack_rollback_deletes_the_stack_and_its_resources(cloud: Aws, image_id: str) -> None:
    stone = StackStone()
    params = _stack_params(image_id)
    vpcs_before = cloud.vpc_ids()
    state = stone.start(make_ctx(params))
    assert len(cloud.vpc_ids()) == len(vpcs_before) + 1
    stone.rollback(make_ctx(params, state=state))
    assert cloud.live_stacks() == []
    assert cloud.vpc_ids() == vpcs_before
    assert cloud.instances("pending", "running") == []
    # Already gone: a second rollback and a delete are no-ops, a monitor says so.
    stone.rollback(make_ctx(params, state=state))
    stone.delete(make_ctx(params, state=state))
    result = stone.monitor(make_ctx(params, state=state))
    assert isinstance(result, Failed) and result.code == "DELETE_COMPLETE"


def test_stack_delete_without_state_finds_it_by_key(cloud: Aws, image_id: str) -> None:
    stone = StackStone()
    params = _stack_params(image_id)
    stone.start(make_ctx(params))
    stone.delete(make_ctx(params, state={}))
    assert cloud.live_stacks() == []
    # An undo task has its own task id (so another default name) but the original's key.
    stone.start(make_ctx(params))
    stone.rollback(make_ctx(params, state={}, task_id="99"))
    assert cloud.live_stacks() == []
    stone.delete(make_ctx(params, state={}))  # nothing left: tolerated
    stone.delete(make_ctx(params, state={"stackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/x/y"}))


@pytest.mark.parametrize("with_outputs", [True, False])
def test_stack_failing_template_fails_and_leaves_nothing(cloud: Aws, image_id: str, with_outputs: bool) -> None:
    stone = StackStone()
    template = _template(image_id)
    # The VPC gets created, then the subnet fails: its VPC does not exist.
    template["Resources"]["Subnet"]["Properties"]["VpcId"] = "vpc-0123456789abcdef0"
    if not with_outputs:
        del template["Outputs"]  # then moto's DescribeStacks works and the stack's tags are checked
    vpcs_before = cloud.vpc_ids()
    with pytest.raises(TerminalError) as info:
        stone.start(make_ctx({"template": template}))
    assert info.value.code == "InvalidVpcID.NotFound" and "CreateStack" in info.value.reason
    assert cloud.live_stacks() == [] and cloud.vpc_ids() == vpcs_before


def test_stack_bad_template_is_refused_before_any_call() -> None:
    stone = StackStone(client_factory=no_client)
    for template in (None, "", "[1, 2]", 42):
        with pytest.raises(TerminalError):
            stone.start(make_ctx({"template": template}))
    with pytest.raises(TerminalError):
        stone.start(make_ctx({"template": {"Resources": {}}, "stackName": "1-starts-with-a-digit"}))


def test_stack_monitor_maps_failure_statuses() -> None:
    # moto creates stacks synchronously and never reports CREATE_FAILED or ROLLBACK_*:
    # a real client with canned AWS answers checks how monitor reads them.
    cfn = boto3.client("cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stone = StackStone(client_factory=lambda service, params: cfn)
    stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
    ctx = make_ctx({"template": {}}, state={"stackName": "s", "stackId": stack_id})
    created = "2024-01-01T00:00:00Z"

    def stack(status: str, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"StackName": "s", "StackId": stack_id, "StackStatus": status, "CreationTime": created}
        if reason:
            body["StackStatusReason"] = reason
        return {"Stacks": [body]}

    event = {"StackId": stack_id, "EventId": "e", "StackName": "s", "Timestamp": created}
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", stack("CREATE_IN_PROGRESS"), {"StackName": stack_id})
        stub.add_response("describe_stacks", stack("ROLLBACK_IN_PROGRESS", "The following resource(s) failed"))
        stub.add_response("describe_stack_events", {"StackEvents": [
            {**event, "LogicalResourceId": "Server", "ResourceType": "AWS::EC2::Instance",
             "ResourceStatus": "DELETE_COMPLETE", "PhysicalResourceId": "i-1"},
            {**event, "LogicalResourceId": "Server", "ResourceType": "AWS::EC2::Instance",
             "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "Resource creation cancelled"},
            {**event, "LogicalResourceId": "Vpc", "ResourceType": "AWS::EC2::VPC",
             "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": "VpcLimitExceeded"},
        ]})
        stub.add_response("describe_stacks", stack("CREATE_FAILED"))
        stub.add_response("describe_stack_events", {"StackEvents": []})
        stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded", http_status_code=400)

        assert stone.monitor(ctx) == Pending(progress="CREATE_IN_PROGRESS")
        failed = stone.monitor(ctx)
        assert isinstance(failed, Failed) and failed.code == "ROLLBACK_IN_PROGRESS"
        assert "The following resource(s) failed" in failed.reason
        assert "first failure: Vpc (AWS::EC2::VPC): VpcLimitExceeded" in failed.reason  # the oldest one
        assert stone.monitor(ctx) == Failed("stack s is CREATE_FAILED", code="CREATE_FAILED")
        assert stone.monitor(ctx) == Pending(progress="describe failed: Throttling")
        stub.assert_no_pending_responses()


def test_stack_mock_makes_no_aws_call(cloud: Aws, image_id: str) -> None:
    out = StackStone(client_factory=no_client).mock(make_ctx(_stack_params(image_id)))
    assert out == {"VpcId": "mock-VpcId", "InstanceId": "mock-InstanceId", "PrivateIp": "mock-PrivateIp",
                   "BucketName": "mock-BucketName", "stackId": "mock", "stackName": "orch-master-1a-7"}
    assert StackStone.has_mock()
    assert cloud.live_stacks() == []


def test_template_version_names_and_tokens() -> None:
    seed_like = json.dumps({"AWSTemplateFormatVersion": "v1.0", "Description": "AwsCloud", "Resources": {}})
    assert json.loads(template_body(seed_like))["AWSTemplateFormatVersion"] == "2010-09-09"
    assert "AWSTemplateFormatVersion" not in json.loads(template_body({"Resources": {}}))
    assert template_body("Resources: {}\n") == "Resources: {}\n"  # YAML goes as is

    ctx = make_ctx({}, namespace="Bingo::RS::FRONT::RSBILLING", task_id="42")
    assert stack_name(ctx) == "orch-Bingo-RS-FRONT-RSBILLING-42"
    assert stack_name(make_ctx({}, namespace=None, task_id="42")) == "orch-task-42"

    assert request_token(KEY) == KEY
    odd = request_token("task/7:attempt_1")
    assert odd == request_token("task/7:attempt_1") and odd != request_token("task/7:attempt_2")
    assert odd[0].isalnum() and len(odd) <= 128 and all(c.isalnum() or c == "-" for c in odd)

