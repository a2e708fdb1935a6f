"""The first seed's representations, field names exactly as there."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask_restx import Namespace, fields

from orchestrator.masking import mask

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def fmt_time(value: datetime | None) -> str | None:
    return value.strftime(TIME_FORMAT) if value else None


def masked_json(text: str | None, empty: Any = None) -> Any:
    """Stored JSON text, secrets masked, re-encoded as the seed's JSON-in-a-string."""
    if text in (None, ""):
        return empty
    return json.dumps(mask(json.loads(text)), ensure_ascii=False, separators=(",", ":"))


def process_view(row) -> dict[str, Any]:
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
        "processContent": masked_json(row.content),
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


def task_view(row) -> dict[str, Any]:
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
        "params": masked_json(row.params),
        "outputs": masked_json(row.outputs),
        "progress": row.progress,
        "attempt": row.attempt,
        "event": row.event,
        "redispatches": row.redispatches,
    }


def event_view(row) -> dict[str, Any]:
    return {"status": row.status, "attempt": row.attempt, "reason": row.reason, "progress": row.progress,
            "time": row.at.isoformat(sep=" ", timespec="milliseconds")}


def deployment_view(row) -> dict[str, Any]:
    return {"deploymentId": row.deployment_id, "modelId": row.model_id, "key": row.key,
            "version": row.version, "name": row.name, "processId": row.process_id,
            "createTime": fmt_time(row.created_at)}


def model_view(row, deployments=None) -> dict[str, Any]:
    view = {"modelId": row.model_id, "key": row.key, "name": row.name, "createTime": fmt_time(row.created_at)}
    if deployments is not None:
        view["deployments"] = [deployment_view(d) for d in deployments]
        view["latestVersion"] = deployments[-1].version if deployments else None
    else:
        view["latestVersion"] = getattr(row, "version", None)
    return view


# -- OpenAPI models

def register_models(ns: Namespace) -> dict[str, Any]:
    error = ns.model("Error", {"code": fields.String(required=True), "message": fields.String(required=True)})
    process = ns.model("Process", {
        "id": fields.String, "processInstanceId": fields.String, "modelId": fields.String,
        "modelKey": fields.String, "deploymentId": fields.String, "processName": fields.String,
        "processType": fields.String(description="null for a process started by request; rollback, cancel or "
                                                 "delete for the processes derived from one"),
        "parentProcessInstanceId": fields.String, "processStatus": fields.String,
        "processContent": fields.String(description="the start variables, a JSON string"),
        "startTime": fields.String, "endTime": fields.String, "activitiFileId": fields.String,
        "outputs": fields.String, "nativeOutputs": fields.String, "reason": fields.String,
        "rollbackProcessInstanceId": fields.String, "cancelProcessInstanceId": fields.String,
        "deleteProcessInstanceId": fields.String,
    })
    start = ns.model("StartProcess", {
        "modelId": fields.String, "deploymentId": fields.String, "key": fields.String,
        "processName": fields.String(required=True),
        "variables": fields.Raw(required=True, description="process variables, a JSON object"),
        "debug": fields.Boolean(default=False),
    })
    task = ns.model("Task", {
        "id": fields.String, "processInstanceId": fields.String, "taskId": fields.String,
        "name": fields.String, "namespace": fields.String, "stone": fields.String,
        "createTime": fields.String, "endTime": fields.String, "status": fields.String,
        "reason": fields.String, "params": fields.String, "outputs": fields.String,
        "progress": fields.String, "attempt": fields.Integer, "event": fields.String,
        "redispatches": fields.Integer(description="how often a lost job had to be sent again"),
    })
    event = ns.model("TaskEvent", {"status": fields.String, "attempt": fields.Integer, "reason": fields.String,
                                   "progress": fields.String, "time": fields.String})
    return {"error": error, "process": process, "start": start, "task": task, "event": event}
