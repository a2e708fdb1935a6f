"""The first seed's representations, field names exactly as there, and their OpenAPI models.

The views below build the answers; the models describe them truthfully (what can be null is
``x-nullable``, JSON-in-a-string fields are strings), and ``tests/integration/test_openapi.py``
holds the two to each other.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask_restx import Model, Namespace, fields

from api.body import MAX_DEPTH, PUBLIC_ID_PATTERN, UUID_PATTERN
from orchestrator.masking import mask
from orchestrator.states import ProcessStatus, TaskStatus

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
EVENT_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$"
# What Python's ``str.strip()`` calls blank but a JSON Schema ``\S`` does not: kept out of
# ``processName`` by the same rule in code and schema (see ``NOT_BLANK``).
ECMA_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = r"\S"
MAX_NAME = 255  # the columns' width


def fmt_time(value: datetime | None) -> str | None:
    return value.strftime(TIME_FORMAT) if value else None


def masked_json(text: str | None, empty: Any = None) -> Any:
    """Stored JSON text, secrets masked, re-encoded as the seed's JSON-in-a-string."""
    if text in (None, ""):
        return empty
    return json.dumps(mask(json.loads(text)), ensure_ascii=False, separators=(",", ":"))


def process_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "processInstanceId": str(row.pk),
        "modelId": row.model_id,
        "modelKey": row.model_key,
        "deploymentId": row.deployment_id,
        "processName": row.process_name,
        "processType": row.process_type,
        "parentProcessInstanceId": _pid(row.parent_pk),
        "processStatus": row.status,
        "processContent": masked_json(row.content, empty="{}"),
        "startTime": fmt_time(row.start_time),
        "endTime": fmt_time(row.end_time),
        "activitiFileId": None,
        "outputs": masked_json(row.outputs),
        "nativeOutputs": masked_json(row.native_outputs, empty=""),
        "reason": row.reason,
        "rollbackProcessInstanceId": _pid(row.rollback_process_pk),
        "cancelProcessInstanceId": _pid(row.cancel_process_pk),
        "deleteProcessInstanceId": _pid(row.delete_process_pk),
    }


def _pid(pk: int | None) -> str | None:
    return None if pk is None else str(pk)


def task_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "processInstanceId": str(row.process_pk),
        "taskId": str(row.pk),
        "name": row.name,
        "namespace": row.namespace,
        "stone": row.stone,
        "createTime": fmt_time(row.create_time),
        "endTime": fmt_time(row.end_time),
        "status": row.status,
        "reason": row.reason,
        "params": masked_json(row.params, empty="{}"),
        "outputs": masked_json(row.outputs),
        "progress": row.progress,
        "attempt": row.attempt,
        "event": row.event,
        "redispatches": row.redispatches,
    }


def event_view(row: Any) -> dict[str, Any]:
    return {"status": row.status, "attempt": row.attempt, "reason": row.reason, "progress": row.progress,
            "time": row.at.isoformat(sep=" ", timespec="milliseconds")}


def deployment_view(row: Any) -> dict[str, Any]:
    return {"deploymentId": row.deployment_id, "modelId": row.model_id, "key": row.key,
            "version": row.version, "name": row.name, "processId": row.process_id,
            "createTime": fmt_time(row.created_at)}


def model_view(row: Any, deployments: list[Any] | None = None) -> dict[str, Any]:
    view = {"modelId": row.model_id, "key": row.key, "name": row.name, "createTime": fmt_time(row.created_at)}
    if deployments is not None:
        view["deployments"] = [deployment_view(d) for d in deployments]
        view["latestVersion"] = deployments[-1].version if deployments else None
    else:
        view["latestVersion"] = getattr(row, "version", None)
    return view


# -- OpenAPI models (Swagger 2.0: ``x-nullable`` is its way to say "or null")

class _Nullable:
    """Emits ``x-nullable: true`` for ``nullable=True`` (Flask-RESTX only does so for nested models)."""

    nullable: bool | None

    def schema(self) -> dict[str, Any]:
        schema = super().schema()  # type: ignore[misc]
        if self.nullable:
            schema["x-nullable"] = True
        return schema


class String(_Nullable, fields.String):
    pass


class Integer(_Nullable, fields.Integer):
    pass


def _out(cls: type, description: str | None = None, nullable: bool = False, **kw: Any) -> Any:
    """An answer's field: always present (``required``), null only where declared."""
    return cls(required=True, description=description, nullable=nullable or None, **kw)


def _json_string(description: str, nullable: bool = False) -> Any:
    return _out(String, description + ", a JSON document in a string (secret-looking keys masked as ******)",
                nullable=nullable)


PID = {"pattern": PUBLIC_ID_PATTERN, "example": "2935001"}
TIME = {"pattern": TIME_PATTERN, "example": "2018-08-13 14:15:24"}
UUID = {"pattern": UUID_PATTERN, "example": "43a9f3e4-8a85-4df0-b1cc-0333be9fc0c8"}
# Processes a process makes: its rollback, cancel and delete processes, and its call activities' sub-processes.
PROCESS_TYPES = ["rollback", "cancel", "delete", "sub"]
EVENTS = ["start", "mock", "rollback", "delete", "cancel"]  # monitor polls run on start rows

ERROR = Model("Error", {
    "code": _out(String, "machine-readable: invalid_input, invalid_model, unauthorized, not_found, "
                         "method_not_allowed, conflict, illegal_transition, payload_too_large, "
                         "unsupported_media_type, internal_error ...", example="not_found"),
    "message": _out(String, "for people", example="process '42' not found"),
})

PROCESS = Model("Process", {
    "id": _out(String, "the process's uuid", **UUID),
    "processInstanceId": _out(String, "the process id used in paths", **PID),
    "modelId": _out(String, "uuid of the model", **UUID),
    "modelKey": _out(String, "key of the model", nullable=True),
    "deploymentId": _out(String, "uuid of the deployment the process runs", **UUID),
    "processName": _out(String, "as given at start; derived processes add -rollback, -cancel or -delete, "
                                "sub-processes /<called element>"),
    "processType": _out(String, "null for a process started by request; rollback, cancel or delete for the "
                                "processes derived from one, sub for a call activity's sub-process", nullable=True,
                        enum=PROCESS_TYPES),
    "parentProcessInstanceId": _out(String, "the process a derived process or sub-process works for", nullable=True,
                                    **PID),
    "processStatus": _out(String, "the process's status", enum=[s.value for s in ProcessStatus]),
    "processContent": _json_string("the start variables"),
    "startTime": _out(String, "UTC", **TIME),
    "endTime": _out(String, "UTC; null until the process ends", nullable=True, **TIME),
    "activitiFileId": _out(String, "not supported: always null", nullable=True),
    "outputs": _json_string("the model's output template applied to the final data; null without one or "
                            "before the end", nullable=True),
    "nativeOutputs": _json_string("the raw final data; an empty string before the end"),
    "reason": _out(String, "why the process failed", nullable=True),
    "rollbackProcessInstanceId": _out(String, "the rollback process started when this one failed", nullable=True,
                                      **PID),
    "cancelProcessInstanceId": _out(String, "the cancel process, once canceled", nullable=True, **PID),
    "deleteProcessInstanceId": _out(String, "the delete process, once deleted", nullable=True, **PID),
})

START = Model("StartProcess", {
    "modelId": String(description="uuid of a model: runs its latest deployment", nullable=True),
    "deploymentId": String(description="uuid of a deployment", nullable=True),
    "key": String(description="key of a model: runs its latest deployment", nullable=True, example="noop_chain"),
    "processName": String(required=True, min_length=1, max_length=MAX_NAME, pattern=NOT_BLANK,
                          description=f"not blank, at most {MAX_NAME} characters", example="test"),
    "variables": fields.Raw(required=True, example={"vpcId": "vpc-509A87BA"},
                            description="the process variables, a JSON object. Names starting with __ are "
                                        "reserved; no NUL characters, lone surrogates or non-finite numbers"),
    "debug": fields.Boolean(default=False, description="on failure, wait in status debug for reRun / resume "
                                                       "instead of rolling back"),
})
START_DESCRIPTION = (f"One of modelId, deploymentId or key is needed (an empty string or null counts as absent; "
                     f"deploymentId wins over modelId over key). The whole body nests at most {MAX_DEPTH} levels of "
                     f"objects and arrays, the body itself being one.")

TASK = Model("Task", {
    "id": _out(String, "the task's uuid", **UUID),
    "processInstanceId": _out(String, "the task's process", **PID),
    "taskId": _out(String, "the task id used in paths", **PID),
    "name": _out(String, "the BPMN service task's name"),
    "namespace": _out(String, "tells apart two tasks of one stone in a process", nullable=True),
    "stone": _out(String, "the executor", example="NoopStone"),
    "createTime": _out(String, "UTC", **TIME),
    "endTime": _out(String, "UTC; null until the task ends", nullable=True, **TIME),
    "status": _out(String, "null until its job is handed to the broker", nullable=True,
                   enum=[s.value for s in TaskStatus]),
    "reason": _out(String, "why the task failed", nullable=True),
    "params": _json_string("the stone's parameters"),
    "outputs": _json_string("what the stone returned", nullable=True),
    "progress": _out(String, "the stone's last progress note", nullable=True),
    "attempt": _out(Integer, "1, then one more at each retry or reRun", min=1),
    "event": _out(String, "what the task runs: start (then monitor), mock, or in a derived process rollback, "
                          "delete or cancel", enum=EVENTS),
    "redispatches": _out(Integer, "how often a lost job had to be sent again", min=0),
})

EVENT = Model("TaskEvent", {
    "status": _out(String, "the status applied", enum=[s.value for s in TaskStatus]),
    "attempt": _out(Integer, "the attempt it belongs to", min=1),
    "reason": _out(String, "why it failed", nullable=True),
    "progress": _out(String, "progress note", nullable=True),
    "time": _out(String, "UTC, with milliseconds", pattern=EVENT_TIME_PATTERN, example="2018-08-13 14:15:24.123"),
})

DEPLOYMENT = Model("ModelDeployment", {
    "deploymentId": _out(String, "uuid of this immutable version", **UUID),
    "modelId": _out(String, "uuid of the model", **UUID),
    "key": _out(String, "the model's key"),
    "version": _out(Integer, "1, 2, ... per key", min=1),
    "name": _out(String, "the model's name", nullable=True),
    "processId": _out(String, "the BPMN process the deployment runs"),
    "createTime": _out(String, "UTC", **TIME),
})

MODEL = Model("Model", {
    "modelId": _out(String, "uuid of the model", **UUID),
    "key": _out(String, "the model's key"),
    "name": _out(String, "the model's name", nullable=True),
    "createTime": _out(String, "UTC", **TIME),
    "latestVersion": _out(Integer, "version of the latest deployment", nullable=True, min=1),
})

MODEL_DETAIL = Model("ModelWithDeployments", {
    **MODEL,
    "deployments": _out(fields.List, "every deployment, oldest first", cls_or_instance=fields.Nested(DEPLOYMENT)),
})

HEALTH = Model("Health", {"status": _out(String, "always ok", enum=["ok"])})

MODELS = {"error": ERROR, "process": PROCESS, "start": START, "task": TASK, "event": EVENT,
          "deployment": DEPLOYMENT, "model": MODEL, "model_detail": MODEL_DETAIL, "health": HEALTH}

BEARER = {"bearer": {"type": "apiKey", "in": "header", "name": "Authorization",
                     "description": "Bearer <token>: one of ORCH_API_TOKENS. Without configured tokens "
                                    "(local runs only) no header is needed."}}


def register_models(ns: Namespace) -> dict[str, Any]:
    """Attach the shared models to ``ns`` (an API only documents models its namespaces carry)."""
    for model in MODELS.values():
        ns.add_model(model.name, model)
    return MODELS


GENERIC_REASONS = {
    400: "bad request",
    401: "authentication required: no or an unknown bearer token (only when tokens are configured)",
    404: "not found",
    409: "makes no sense in the current status",
    413: "the body is larger than the configured limit (ORCH_MAX_BODY_BYTES, 4 MiB by default)",
    415: "unsupported Content-Type",
}


def error_responses(ns: Namespace, reasons: dict[int, str | None]) -> Any:
    """Decorator documenting the JSON error answers an operation can give (``None``: the generic reason)."""
    def decorate(func: Any) -> Any:
        for status, reason in reasons.items():
            func = ns.response(status, reason or GENERIC_REASONS[status], ERROR)(func)
        return func
    return decorate
