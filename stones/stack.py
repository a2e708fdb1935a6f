"""StackStone: a CloudFormation stack, created by ``start``, watched until complete, deleted by ``rollback``.

Params:

- ``template`` (required): the template, as an object or a JSON string (another string,
  such as YAML, is sent as is). A non-AWS ``AWSTemplateFormatVersion`` (the first seed
  says ``"v1.0"``) becomes ``"2010-09-09"``, the only version CloudFormation knows.
- ``parameters`` (object): template parameters; lists become comma-separated strings
- ``stackName``: default ``orch-<namespace>-<task id>``, made a valid stack name
- ``capabilities`` (list, e.g. ``["CAPABILITY_IAM"]``), ``tags`` (object)
- ``region``, ``endpointUrl``: see ``stones.aws``

Outputs: the stack's Outputs as ``{OutputKey: OutputValue}``, plus ``stackId`` and ``stackName``.

Idempotency: the task's key goes to CreateStack as ``ClientRequestToken`` and onto the stack
as the ``orchestrator:idempotency-key`` tag. A name clash with a stack carrying the same key
is this task's own earlier start; with any other stack it is an error, and nothing that is
not ours is ever adopted or deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from stones.aws import KEY_TAG, PROCESS_TAG, TASK_TAG, AwsStone, aws_errors, idempotency_key
from stones.base import Done, Failed, MonitorResult, Pending, RetryableError, StoneContext, TerminalError

TEMPLATE_VERSION = "2010-09-09"
TEMPLATE_BODY_MAX = 51_200  # bytes; larger templates need TemplateURL (S3)
STACK_NAME_MAX = 128
TOKEN_MAX = 128
_STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]*")
_TOKEN = re.compile(r"[A-Za-z0-9][-A-Za-z0-9]*")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9]+")
# Where a failed CreateStack can leave a stack, and how far our clock may run ahead of AWS's.
_PARTIAL_STATUSES = ("CREATE_IN_PROGRESS", "CREATE_FAILED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED",
                     "ROLLBACK_COMPLETE")
CLOCK_SLACK = timedelta(seconds=5)


def _template_doc(raw: Any) -> dict[str, Any] | str:
    """The template as an object, or the string itself when it is not JSON (YAML)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            doc = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(doc, dict):
            return doc
    raise TerminalError("StackStone: params.template must be a template object or a non-empty JSON/YAML string")


def template_body(raw: Any) -> str:
    """The TemplateBody to send: JSON with a version CloudFormation accepts."""
    doc = _template_doc(raw)
    if isinstance(doc, dict):
        if "AWSTemplateFormatVersion" in doc and doc["AWSTemplateFormatVersion"] != TEMPLATE_VERSION:
            doc = {**doc, "AWSTemplateFormatVersion": TEMPLATE_VERSION}
        body = json.dumps(doc, separators=(",", ":"))
    else:
        body = doc
    size = len(body.encode())
    if size > TEMPLATE_BODY_MAX:
        raise TerminalError(f"StackStone: the template is {size} bytes; CloudFormation takes at most "
                            f"{TEMPLATE_BODY_MAX} inline")
    return body


def stack_name(ctx: StoneContext) -> str:
    """``params.stackName`` (checked), else one derived from the namespace and the task id."""
    given = ctx.params.get("stackName")
    if given is not None and given != "":
        if not isinstance(given, str) or not _STACK_NAME.fullmatch(given) or len(given) > STACK_NAME_MAX:
            raise TerminalError(f"StackStone: params.stackName must match [A-Za-z][-A-Za-z0-9]* (at most "
                                f"{STACK_NAME_MAX} characters), got {given!r}")
        return given
    namespace = ctx.params.get("namespace") or ctx.namespace or "task"
    name = _NOT_NAME_CHARS.sub("-", f"orch-{namespace}-{ctx.task_id}").strip("-")
    return name[:STACK_NAME_MAX].rstrip("-")


def request_token(key: str) -> str:
    """``key`` as a ClientRequestToken: itself when valid, else a deterministic digest of it."""
    if _TOKEN.fullmatch(key) and len(key) <= TOKEN_MAX:
        return key
    # Replacing bad characters could map two keys to one token; a digest cannot.
    return "k" + hashlib.sha256(key.encode()).hexdigest()


def _parameters(params: dict[str, Any]) -> list[dict[str, str]]:
    raw = params.get("parameters") or {}
    if not isinstance(raw, dict):
        raise TerminalError(f"StackStone: params.parameters must be an object, got {type(raw).__name__}")
    out = []
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ",".join(str(v) for v in value)  # CommaDelimitedList / List<...> parameters
        else:
            # Never echo the value: parameters often carry passwords.
            raise TerminalError(f"StackStone: params.parameters.{key} must be a string, number or list")
        out.append({"ParameterKey": str(key), "ParameterValue": text})
    return out


def _capabilities(params: dict[str, Any]) -> list[str]:
    raw = params.get("capabilities") or []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise TerminalError(f"StackStone: params.capabilities must be a list of strings, got {raw!r}")
    return raw


def _tags(ctx: StoneContext, token: str) -> list[dict[str, str]]:
    user = ctx.params.get("tags") or {}
    if not isinstance(user, dict):
        raise TerminalError(f"StackStone: params.tags must be an object, got {user!r}")
    tags = {str(k): str(v) for k, v in user.items()}
    tags.update({KEY_TAG: token, TASK_TAG: str(ctx.task_id), PROCESS_TAG: str(ctx.process_instance_id)})
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _owned(stack: dict[str, Any], token: str) -> bool:
    return any(t.get("Key") == KEY_TAG and t.get("Value") == token for t in stack.get("Tags") or [])


def _describe(cfn: Any, ref: str) -> dict[str, Any] | None:
    """The stack named (or with the id) ``ref``, None when there is none."""
    try:
        with aws_errors("cloudformation DescribeStacks"):
            stacks = cfn.describe_stacks(StackName=ref).get("Stacks") or []
    except TerminalError as exc:
        if exc.code == "ValidationError" and "does not exist" in exc.reason:
            return None
        raise
    return stacks[0] if stacks else None


def _root_cause(cfn: Any, stack_id: str) -> str | None:
    """The oldest resource failure of the stack, the one that set the rest off (best effort)."""
    try:
        with aws_errors("cloudformation DescribeStackEvents"):
            events = cfn.describe_stack_events(StackName=stack_id).get("StackEvents") or []
    except (RetryableError, TerminalError):
        return None
    failures = [
        e for e in events
        if str(e.get("ResourceStatus", "")).endswith("_FAILED") and e.get("ResourceStatusReason")
        and e.get("PhysicalResourceId") != stack_id
    ]  # fmt: skip
    if not failures:
        return None
    first = failures[-1]  # events come newest first
    return f"{first.get('LogicalResourceId')} ({first.get('ResourceType')}): {first['ResourceStatusReason']}"


def _made_since(cfn: Any, name: str, since: datetime) -> str | None:
    """The id of a half-made stack called ``name`` created since ``since``, if there is one."""
    earliest = since - CLOCK_SLACK
    with aws_errors("cloudformation ListStacks"):
        for page in cfn.get_paginator("list_stacks").paginate(StackStatusFilter=list(_PARTIAL_STATUSES)):
            for summary in page.get("StackSummaries", []):
                created = summary.get("CreationTime")
                if summary.get("StackName") == name and isinstance(created, datetime) and created >= earliest:
                    return str(summary["StackId"])
    return None


def _is_failure(status: str) -> bool:
    return status.startswith(("ROLLBACK_", "DELETE_")) or status.endswith("_FAILED")


class StackStone(AwsStone):
    """A CloudFormation stack: CreateStack, DescribeStacks until complete, DeleteStack to undo."""

    name = "StackStone"
    service = "cloudformation"
    monitor_interval_s = 5.0
    monitor_deadline_s = 3600.0

    def start(self, ctx: StoneContext) -> dict[str, Any]:
        if ctx.state.get("stackId"):
            return dict(ctx.state)  # a duplicate start that already knows its stack
        name = stack_name(ctx)
        token = request_token(idempotency_key(ctx))
        args: dict[str, Any] = {
            "StackName": name,
            "TemplateBody": template_body(ctx.params.get("template")),
            "Parameters": _parameters(ctx.params),
            "ClientRequestToken": token,
            "Tags": _tags(ctx, token),
        }
        capabilities = _capabilities(ctx.params)
        if capabilities:
            args["Capabilities"] = capabilities
        cfn = self._client(ctx)
        region = cfn.meta.region_name
        ctx.log.info("StackStone: creating stack %s in %s", name, region)
        requested_at = datetime.now(UTC)
        try:
            with aws_errors("cloudformation CreateStack"):
                reply = cfn.create_stack(**args)
        except TerminalError as exc:
            if exc.code == "AlreadyExistsException":
                stack = _describe(cfn, name)
                if stack is not None and _owned(stack, token):
                    ctx.log.info("StackStone: stack %s was already created for this task", name)
                    return {"stackName": name, "stackId": stack["StackId"], "region": region}
                raise TerminalError(f"StackStone: a stack named {name} already exists and was not created by "
                                    "this task; set params.stackName", code="AlreadyExistsException") from exc
            self._discard_partial(cfn, name, token, requested_at, ctx)
            raise
        return {"stackName": name, "stackId": reply["StackId"], "region": region}

    def _discard_partial(self, cfn: Any, name: str, token: str, since: datetime, ctx: StoneContext) -> None:
        # AWS refuses a bad template before creating anything, but an emulator (moto) may
        # create resources synchronously and leave a half-made stack behind when one fails.
        try:
            try:
                stack = _describe(cfn, name)
                stack_id = stack["StackId"] if stack is not None and _owned(stack, token) else None
            except RetryableError:
                # moto answers 500 to DescribeStacks when an output refers to the failed
                # resource; its summary still tells that our failed call just made it.
                stack_id = _made_since(cfn, name, since)
            if stack_id is not None:
                ctx.log.warning("StackStone: deleting stack %s left behind by the failed create", name)
                with aws_errors("cloudformation DeleteStack"):
                    cfn.delete_stack(StackName=stack_id)
        except (RetryableError, TerminalError) as exc:
            ctx.log.warning("StackStone: could not clean up after the failed create of %s: %s", name, exc.reason)

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        ref = ctx.state.get("stackId") or ctx.state.get("stackName")
        if not ref:
            raise TerminalError("StackStone: monitor needs the state returned by start")
        cfn = self._client(ctx)
        try:
            stack = _describe(cfn, ref)
        except RetryableError as exc:
            ctx.log.warning("%s", exc.reason)
            return Pending(progress=f"describe failed: {exc.code}")
        if stack is None:
            return Failed(f"stack {ref} does not exist", code="StackNotFound")
        status = str(stack.get("StackStatus"))
        name = stack.get("StackName", ref)
        if _is_failure(status):
            reason = f"stack {name} is {status}"
            if stack.get("StackStatusReason"):
                reason += f": {stack['StackStatusReason']}"
            cause = _root_cause(cfn, stack["StackId"])
            if cause:
                reason += f"; first failure: {cause}"
            return Failed(reason, code=status)
        if status.endswith("_IN_PROGRESS"):
            return Pending(progress=status)
        if status.endswith("_COMPLETE"):
            outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs") or []}
            return Done({**outputs, "stackId": stack["StackId"], "stackName": name})
        return Failed(f"stack {name} is in an unexpected status {status}", code=status)

    def _own_stack(self, cfn: Any, ctx: StoneContext) -> dict[str, Any] | None:
        """This task's stack when its id is unknown (a start whose reply was lost): by its key tag."""
        token = request_token(idempotency_key(ctx))
        name = stack_name(ctx)
        stack = _describe(cfn, name)
        if stack is not None and _owned(stack, token):
            return stack
        # An undo task has its own task id, hence another default name: look at every stack.
        with aws_errors("cloudformation DescribeStacks"):
            for page in cfn.get_paginator("describe_stacks").paginate():
                for candidate in page.get("Stacks", []):
                    if _owned(candidate, token) and candidate.get("StackStatus") != "DELETE_COMPLETE":
                        return candidate
        if stack is not None:
            ctx.log.warning("StackStone: stack %s was not created by this task; left alone", name)
        return None

    def _undo(self, ctx: StoneContext) -> None:
        """Delete the task's stack: the one in its state, else the one carrying its key."""
        cfn = self._client(ctx)
        ref = ctx.state.get("stackId")
        if not ref:
            stack = self._own_stack(cfn, ctx)
            if stack is None:
                ctx.log.info("StackStone: no stack of this task to delete")
                return
            ref = stack["StackId"]
        ctx.log.info("StackStone: deleting stack %s", ref)
        try:
            with aws_errors("cloudformation DeleteStack"):
                cfn.delete_stack(StackName=ref)
        except TerminalError as exc:
            if not (exc.code == "ValidationError" and "does not exist" in exc.reason):
                raise

    def mock(self, ctx: StoneContext) -> dict[str, Any]:
        name = stack_name(ctx)
        template_body(ctx.params.get("template"))  # a mock run still catches a bad template
        doc = _template_doc(ctx.params.get("template"))
        declared = doc.get("Outputs") if isinstance(doc, dict) else None
        outputs = {str(key): f"mock-{key}" for key in declared} if isinstance(declared, dict) else {}
        return {**outputs, "stackId": "mock", "stackName": name}
