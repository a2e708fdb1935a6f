"""MachineStone: EC2 instances, launched by ``start``, watched until running, terminated by ``rollback``.

Params:

- ``imageId`` (required), ``instanceType`` (default ``t3.micro``; passed as given, the
  provider judges it), ``count`` (default 1: all or nothing)
- ``subnetId``, ``securityGroupName`` (a name or a list), ``securityGroupIds`` (a list or
  a comma-separated string), ``keypairName``; empty strings count as absent
- ``tags`` (object), ``namespace`` (goes into the ``Name`` tag with the task id)
- ``region``, ``endpointUrl``: see ``stones.aws``
- ``failAfterStart`` (testing aid): once the instances exist, monitor returns
  ``Failed("injected failure")``, so a rollback has something real to clean up.

Idempotency: the task's key goes to RunInstances as ``ClientToken`` and onto every instance
as the ``orchestrator:idempotency-key`` tag. A second start with the same key first looks for
instances carrying that tag (moto ignores ClientToken; AWS honours both), and rollback
finds by that tag what a start whose reply was lost created. The same key always means the
same instances, even once terminated: a new launch needs a new key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stones.aws import (
    KEY_TAG,
    PROCESS_TAG,
    TASK_TAG,
    AwsStone,
    aws_errors,
    aws_region,
    idempotency_key,
    short_token,
    truthy,
)
from stones.base import Done, Failed, MonitorResult, Pending, RetryableError, StoneContext, TerminalError

DEFAULT_INSTANCE_TYPE = "t3.micro"
CLIENT_TOKEN_MAX = 64  # RunInstances' limit
TAG_VALUE_MAX = 256
# States of an instance that still exists (costs money, may need terminating).
LIVE_STATES = ("pending", "running", "stopping", "stopped")
DEAD_STATES = frozenset({"shutting-down", "terminated"})


def _opt_str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TerminalError(f"MachineStone: params.{key} must be a string, got {value!r}")
    return value


def _str_list(params: dict[str, Any], key: str, split_commas: bool) -> list[str]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        # Ids never hold commas; security group *names* may, so they are not split.
        parts = value.split(",") if split_commas else [value]
        return [p.strip() for p in parts if p.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    raise TerminalError(f"MachineStone: params.{key} must be a string or a list of strings, got {value!r}")


def _count(params: dict[str, Any]) -> int:
    raw = params.get("count", 1)
    if isinstance(raw, bool):
        raise TerminalError(f"MachineStone: params.count must be a whole number >= 1, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise TerminalError(f"MachineStone: params.count must be a whole number >= 1, got {raw!r}") from None
    if value < 1 or str(value) != str(raw).strip():
        raise TerminalError(f"MachineStone: params.count must be a whole number >= 1, got {raw!r}")
    return value


class _Spec:
    """Validated params of one task."""

    def __init__(self, ctx: StoneContext):
        params = ctx.params
        image_id = _opt_str(params, "imageId")
        if image_id is None:
            raise TerminalError("MachineStone: params.imageId is required")
        self.image_id = image_id
        self.instance_type = _opt_str(params, "instanceType") or DEFAULT_INSTANCE_TYPE
        self.subnet_id = _opt_str(params, "subnetId")
        self.key_name = _opt_str(params, "keypairName")
        self.sg_names = _str_list(params, "securityGroupName", split_commas=False)
        self.sg_ids = _str_list(params, "securityGroupIds", split_commas=True)
        self.count = _count(params)
        tags = params.get("tags") or {}
        if not isinstance(tags, dict):
            raise TerminalError(f"MachineStone: params.tags must be an object, got {tags!r}")
        namespace = params.get("namespace") or ctx.namespace
        name = f"{namespace}-{ctx.task_id}" if namespace else f"task-{ctx.task_id}"
        self.tags = {"Name": name, **{str(k): str(v) for k, v in tags.items()}}

    def run_args(self, ctx: StoneContext, token: str) -> dict[str, Any]:
        # Ours last: a user tag must not break the lookup by idempotency key.
        tags = {
            **self.tags,
            KEY_TAG: token,
            TASK_TAG: str(ctx.task_id),
            PROCESS_TAG: str(ctx.process_instance_id),
        }
        tag_list = [{"Key": k, "Value": v[:TAG_VALUE_MAX]} for k, v in tags.items()]
        args: dict[str, Any] = {
            "ImageId": self.image_id,
            "InstanceType": self.instance_type,
            "MinCount": self.count,
            "MaxCount": self.count,
            "ClientToken": token,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if self.subnet_id:
            args["SubnetId"] = self.subnet_id
        if self.sg_names:
            args["SecurityGroups"] = self.sg_names
        if self.sg_ids:
            args["SecurityGroupIds"] = self.sg_ids
        if self.key_name:
            args["KeyName"] = self.key_name
        return args


def _token(ctx: StoneContext) -> str:
    return short_token(idempotency_key(ctx), CLIENT_TOKEN_MAX)


def _find(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every instance matching ``filters`` (all pages), in launch order."""
    found: list[dict[str, Any]] = []
    with aws_errors("ec2 DescribeInstances"):
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                found.extend(reservation.get("Instances", []))
    found.sort(key=lambda i: (str(i.get("LaunchTime", "")), i.get("AmiLaunchIndex", 0)))
    return found


def _state_ids(ctx: StoneContext) -> list[str]:
    ids = ctx.state.get("instanceIds") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise TerminalError(f"MachineStone: state.instanceIds must be a list of ids, got {ids!r}")
    return ids


def _outputs(instances: list[dict[str, Any]], region: str) -> dict[str, Any]:
    first = instances[0]
    return {
        "instanceId": first["InstanceId"],
        "instanceIds": [i["InstanceId"] for i in instances],
        "privateIpAddress": first.get("PrivateIpAddress"),
        "publicIpAddress": first.get("PublicIpAddress"),
        "privateIpAddresses": [i.get("PrivateIpAddress") for i in instances],
        "state": "running",
        "region": region,
    }


class MachineStone(AwsStone):
    """EC2 instances: RunInstances, DescribeInstances until all run, TerminateInstances to undo."""

    name = "MachineStone"
    service = "ec2"
    monitor_interval_s = 3.0
    monitor_deadline_s = 1800.0

    def start(self, ctx: StoneContext) -> dict[str, Any]:
        if ctx.state.get("instanceIds"):
            return dict(ctx.state)  # a duplicate start that already knows its instances
        spec = _Spec(ctx)
        ec2 = self._client(ctx)
        token = _token(ctx)
        region = ec2.meta.region_name
        existing = _find(ec2, [{"Name": f"tag:{KEY_TAG}", "Values": [token]}])
        if existing:
            ids = [i["InstanceId"] for i in existing]
            ctx.log.info("MachineStone: instances for key %s already exist: %s", token, ids)
            return {"instanceIds": ids, "region": region}
        ctx.log.info("MachineStone: launching %d x %s from %s in %s", spec.count, spec.instance_type,
                     spec.image_id, region)
        with aws_errors("ec2 RunInstances"):
            reply = ec2.run_instances(**spec.run_args(ctx, token))
        instances = sorted(reply.get("Instances", []), key=lambda i: i.get("AmiLaunchIndex", 0))
        return {"instanceIds": [i["InstanceId"] for i in instances], "region": region}

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        ids = _state_ids(ctx)
        if not ids:
            raise TerminalError("MachineStone: monitor needs the state returned by start")
        ec2 = self._client(ctx)
        try:
            found = {i["InstanceId"]: i for i in _find(ec2, [{"Name": "instance-id", "Values": ids}])}
        except RetryableError as exc:
            # A throttled poll is not the machine failing: poll again; the deadline bounds this.
            ctx.log.warning("%s", exc.reason)
            return Pending(progress=f"describe failed: {exc.code}")
        if len(found) < len(ids):
            # EC2 is eventually consistent: a fresh instance may not be listed yet.
            return Pending(progress=f"waiting for {len(ids) - len(found)}/{len(ids)} instances to appear")
        instances = [found[i] for i in ids]
        if truthy(ctx.params.get("failAfterStart", False)):
            return Failed("injected failure (params.failAfterStart)", code="InjectedFailure")
        for inst in instances:
            state = inst.get("State", {}).get("Name")
            if state in DEAD_STATES:
                why = (inst.get("StateReason", {}).get("Message") or inst.get("StateTransitionReason")
                       or "no reason given")
                return Failed(f"instance {inst['InstanceId']} is {state}: {why}", code="InstanceTerminated")
        running = sum(1 for i in instances if i.get("State", {}).get("Name") == "running")
        if running < len(instances):
            return Pending(progress=f"pending {running}/{len(instances)} running")
        return Done(_outputs(instances, ec2.meta.region_name))

    def _undo(self, ctx: StoneContext) -> None:
        """Terminate the task's live instances: those in its state and those carrying its key."""
        ids = _state_ids(ctx)
        ec2 = self._client(ctx)
        live_filter = {"Name": "instance-state-name", "Values": list(LIVE_STATES)}
        live: dict[str, None] = {}  # ordered set
        if ids:
            for inst in _find(ec2, [{"Name": "instance-id", "Values": ids}, live_filter]):
                live[inst["InstanceId"]] = None
        # Also what a start whose reply was lost (or an earlier duplicate) launched.
        for inst in _find(ec2, [{"Name": f"tag:{KEY_TAG}", "Values": [_token(ctx)]}, live_filter]):
            live[inst["InstanceId"]] = None
        if not live:
            ctx.log.info("MachineStone: nothing to terminate for task %s", ctx.task_id)
            return
        ctx.log.info("MachineStone: terminating %s", list(live))
        try:
            with aws_errors("ec2 TerminateInstances"):
                ec2.terminate_instances(InstanceIds=list(live))
        except TerminalError as exc:
            if exc.code != "InvalidInstanceID.NotFound":  # gone between describe and terminate
                raise

    def mock(self, ctx: StoneContext) -> dict[str, Any]:
        spec = _Spec(ctx)  # a mock run still catches bad params
        key = idempotency_key(ctx)
        instances = []
        for n in range(spec.count):
            digest = hashlib.sha256(f"{key}/{n}".encode()).hexdigest()
            # "i-" + 17 characters like a real id: "mock", then 13 hex digits.
            ip = f"10.{int(digest[13:15], 16)}.{int(digest[15:17], 16)}.{4 + int(digest[17:19], 16) % 250}"
            instances.append({"InstanceId": f"i-mock{digest[:13]}", "PrivateIpAddress": ip})
        return _outputs(instances, aws_region(ctx.params))
