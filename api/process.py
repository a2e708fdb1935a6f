"""``/process``: start and read processes (first seed)."""

from __future__ import annotations

from flask import current_app
from flask_restx import Namespace, Resource

from api.body import json_object
from api.schemas import process_view, register_models
from orchestrator.errors import InvalidInput
from orchestrator.service import ModelRef, Service

PATH = "/process"
ns = Namespace("process", description="Processes: runs of a deployed model")
M = register_models(ns)


def service() -> Service:
    return current_app.extensions["orchestrator"]


def _optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    return value


def parse_start(body: dict) -> tuple[ModelRef, str, dict, bool]:
    ref = ModelRef(deployment_id=_optional_str(body, "deploymentId"), model_id=_optional_str(body, "modelId"),
                   key=_optional_str(body, "key"))
    if not (ref.deployment_id or ref.model_id or ref.key):
        raise InvalidInput("one of modelId, deploymentId or key is required")
    name = body.get("processName")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("processName is required (a non-empty string)")
    if len(name) > 255:
        raise InvalidInput("processName is longer than 255 characters")
    variables = body.get("variables")
    if not isinstance(variables, dict):
        raise InvalidInput("variables is required and must be a JSON object")
    debug = body.get("debug", False)
    if not isinstance(debug, bool):
        raise InvalidInput("debug must be true or false")
    return ref, name, variables, debug


@ns.route("")
class ProcessList(Resource):
    @ns.expect(M["start"])
    @ns.response(200, "the started process", M["process"])
    @ns.response(400, "bad request", M["error"])
    @ns.response(404, "unknown model, deployment or key", M["error"])
    @ns.response(415, "not JSON", M["error"])
    def post(self):
        """Start a process from a modelId, deploymentId or key (latest deployment)."""
        ref, name, variables, debug = parse_start(json_object())
        return process_view(service().start_process(ref, name, variables, debug=debug)), 200


@ns.route("/<string:processInstanceId>")
@ns.param("processInstanceId", "the process id")
class ProcessItem(Resource):
    @ns.response(200, "the process", M["process"])
    @ns.response(404, "no such process", M["error"])
    def get(self, processInstanceId: str):
        """Read a process."""
        return process_view(service().get_process(processInstanceId))


OPERATIONS = {"cancel": Service.cancel_process, "delete": Service.delete_process}


@ns.route("/<string:processInstanceId>/<string:operate>")
@ns.param("processInstanceId", "the process id")
@ns.param("operate", "cancel: stop a running process; delete: clean up what a finished process created")
class ProcessOperation(Resource):
    @ns.response(200, "the process, now canceling or deleting", M["process"])
    @ns.response(400, "unknown operation", M["error"])
    @ns.response(404, "no such process", M["error"])
    @ns.response(409, "the operation makes no sense in the process's status", M["error"])
    def put(self, processInstanceId: str, operate: str):
        """Cancel or delete a process: runs a cancel / delete process of the stones' events."""
        operation = OPERATIONS.get(operate)
        if operation is None:
            raise InvalidInput(f"unknown operation {operate!r}: use cancel or delete")
        return process_view(operation(service(), processInstanceId))
