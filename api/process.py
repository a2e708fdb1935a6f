"""``/process``: start and read processes (first seed)."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, Resource

from api.body import PUBLIC_ID_PATTERN, json_object, public_id
from api.current import service
from api.idempotency import HEADER_DOC, idempotency
from api.schemas import (
    BEARER,
    ECMA_SPACE,
    MAX_NAME,
    START_DESCRIPTION,
    error_responses,
    process_view,
    register_models,
)
from orchestrator.errors import InvalidInput
from orchestrator.service import ModelRef, Service

PATH = "/process"
ns = Namespace("process", description="Processes: runs of a deployed model", authorizations=BEARER)
M = register_models(ns)
ID_PARAM = {"description": "the process id: a decimal number (anything else is 404)", "pattern": PUBLIC_ID_PATTERN}


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    return value


def parse_start(body: dict[str, Any]) -> tuple[ModelRef, str, dict[str, Any], bool]:
    """The seed's start request, checked; ``json_object`` has already refused what no field may hold."""
    ref = ModelRef(deployment_id=_optional_str(body, "deploymentId"), model_id=_optional_str(body, "modelId"),
                   key=_optional_str(body, "key"))
    if not (ref.deployment_id or ref.model_id or ref.key):
        raise InvalidInput("one of modelId, deploymentId or key is required")
    name = body.get("processName")
    if not isinstance(name, str) or not name.strip(ECMA_SPACE):
        raise InvalidInput("processName is required (a non-empty string)")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"processName is longer than {MAX_NAME} characters")
    variables = body.get("variables")
    if not isinstance(variables, dict):
        raise InvalidInput("variables is required and must be a JSON object")
    debug = body.get("debug", False)
    if not isinstance(debug, bool):
        raise InvalidInput("debug must be true or false")
    return ref, name, variables, debug


@ns.route("")
@ns.doc(security="bearer")
class ProcessList(Resource):
    @ns.expect((M["start"], START_DESCRIPTION))
    @ns.doc(params=HEADER_DOC)
    @ns.response(200, "the started process (or, for an Idempotency-Key seen with this body, that one)",
                 M["process"])
    @error_responses(ns, {
        400: "malformed JSON, not an object, a field of the wrong type, no model reference, a blank or too long "
             "processName, a reserved variable name, NUL characters, lone surrogates, non-finite numbers, or "
             "nesting deeper than the limit",
        401: None, 404: "unknown modelId, deploymentId or key",
        409: "the Idempotency-Key was used with another body", 413: None, 415: "not application/json (UTF-8)"})
    def post(self) -> Any:
        """Start a process from a modelId, deploymentId or key (latest deployment)."""
        body = json_object()
        ref, name, variables, debug = parse_start(body)
        proc, _ = service().start(ref, name, variables, debug=debug, idempotency=idempotency("process", body))
        return process_view(proc), 200


@ns.route("/<string:processInstanceId>")
@ns.param("processInstanceId", **ID_PARAM)
@ns.doc(security="bearer")
class ProcessItem(Resource):
    @ns.response(200, "the process", M["process"])
    @error_responses(ns, {401: None, 404: "no such process"})
    def get(self, processInstanceId: str) -> Any:
        """Read a process."""
        return process_view(service().get_process(public_id(processInstanceId, "process")))


OPERATIONS = {"cancel": Service.cancel_process, "delete": Service.delete_process}


@ns.route("/<string:processInstanceId>/<string:operate>")
@ns.param("processInstanceId", **ID_PARAM)
@ns.param("operate", "cancel: stop a running process; delete: clean up what a finished process created",
          enum=list(OPERATIONS))
@ns.doc(security="bearer")
class ProcessOperation(Resource):
    @ns.response(200, "the process, now canceling or deleting", M["process"])
    @error_responses(ns, {400: "unknown operation", 401: None, 404: "no such process",
                          409: "the operation makes no sense in the process's status"})
    def put(self, processInstanceId: str, operate: str) -> Any:
        """Cancel or delete a process: runs a cancel / delete process of the stones' events."""
        operation = OPERATIONS.get(operate)
        if operation is None:
            raise InvalidInput(f"unknown operation {operate!r}: use cancel or delete")
        return process_view(operation(service(), public_id(processInstanceId, "process")))
