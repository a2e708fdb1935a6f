"""``runtime/``: the second seed's process-instance API, a second face of the same processes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request
from flask_restx import Resource, fields

from api.activiti import (
    ERROR,
    QUERY_PARAMS,
    envelope,
    instance_view,
    json_body_object,
    json_value,
    namespace,
    process_query,
    service,
    variable_view,
)
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.service import ModelRef
from orchestrator.variables import parse_items

PATH = "/runtime"
ns = namespace("runtime", "Activiti-style process instances (second seed)")

VARIABLE = ns.model("Variable", {
    "name": fields.String(required=True),
    "type": fields.String(description="string, short, integer, long, double, boolean, date (ISO 8601) or json"),
    "value": fields.Raw(description="the value, of the declared type"),
    "scope": fields.String(description="always local"),
})
INSTANCE = ns.model("ProcessInstance", {
    "id": fields.String, "url": fields.String, "businessKey": fields.String, "suspended": fields.Boolean,
    "ended": fields.Boolean, "completed": fields.Boolean, "processDefinitionId": fields.String,
    "processDefinitionUrl": fields.String, "activityId": fields.String, "tenantId": fields.String,
    "variables": fields.List(fields.Nested(VARIABLE), description="with includeProcessVariables=true"),
})
PAGE = ns.model("ProcessInstancePage", {
    "data": fields.List(fields.Nested(INSTANCE)), "total": fields.Integer, "start": fields.Integer,
    "sort": fields.String, "order": fields.String, "size": fields.Integer,
})
START = ns.model("StartProcessInstance", {
    "processDefinitionId": fields.String(description="key:version:deploymentId (or a deploymentId)"),
    "processDefinitionKey": fields.String(description="the latest version of this key"),
    "businessKey": fields.String, "tenantId": fields.String,
    "variables": fields.List(fields.Nested(VARIABLE)),
})
ACTION = ns.model("ProcessInstanceAction", {
    "action": fields.String(required=True, description="suspend, activate or jumpToActivity"),
    "activityId": fields.String(description="jumpToActivity: the BPMN id of the activity to run next"),
    "jumpOrigin": fields.String(description="jumpToActivity: free text, kept in the log"),
})
ASSIGN_CHECK = ns.model("AssignCheck", {
    "processDefinitionId": fields.String, "processDefinitionKey": fields.String, "activityId": fields.String,
    "taskId": fields.String, "executionId": fields.String,
})
PARTICIPANT = ns.model("Participant", {"id": fields.String, "code": fields.String, "name": fields.String,
                                       "type": fields.String(description="assignee, candidateUser, "
                                                                         "candidateGroup or lane")})
ASSIGN_ITEM = ns.model("AssignInfoItem", {"activityId": fields.String, "activityName": fields.String,
                                          "participants": fields.List(fields.Nested(PARTICIPANT))})
ASSIGN_INFO = ns.model("AssignInfo", {"taskId": fields.String, "executionId": fields.String,
                                      "assignInfoItems": fields.List(fields.Nested(ASSIGN_ITEM))})
ASSIGN_ANSWER = ns.model("AssignCheckAnswer", {"assignInfo": fields.Nested(ASSIGN_INFO)})
IDEMPOTENCY_HEADER = {"Idempotency-Key": {"description": "the same key and body return the same process (200); "
                                                         "another body under the key answers 409",
                                          "in": "header", "type": "string", "required": False}}


def request_hash(scope: str, body: Any) -> str:
    return hashlib.sha256(f"{scope}\n{json.dumps(body, sort_keys=True)}".encode()).hexdigest()


def idempotency(scope: str, body: Any) -> tuple[str, str] | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key.strip() or len(key) > 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters")
    return key, request_hash(scope, body)


def _view(proc):
    return instance_view(proc, service().activity_of(proc.pk))


@ns.route("/process-instances")
class ProcessInstances(Resource):
    @ns.doc(params={k: {"description": v, "in": "query", "type": "string"} for k, v in QUERY_PARAMS.items()})
    @ns.response(200, "a page of running process instances", PAGE)
    @ns.response(400, "a filter, sort field or paging value is not valid", ERROR)
    def get(self):
        """List running process instances, with the second seed's filters and paging."""
        q, user, include = process_query(request.args.to_dict())
        rows, total, activities, variables = service().query_processes(q, involved_user=user,
                                                                       with_variables=include)
        data = [instance_view(r, activities.get(r.pk), variables.get(r.pk) if include else None) for r in rows]
        return envelope(data, total, q.start, q.sort, q.order)

    @ns.expect(START)
    @ns.doc(params=IDEMPOTENCY_HEADER)
    @ns.response(201, "started", INSTANCE)
    @ns.response(200, "an Idempotency-Key seen before with the same body: that process", INSTANCE)
    @ns.response(400, "no such process definition, or variables that are not valid", ERROR)
    @ns.response(409, "the Idempotency-Key was used with another body", ERROR)
    @ns.response(415, "not JSON", ERROR)
    def post(self):
        """Start a process instance by processDefinitionId or processDefinitionKey."""
        body = json_body_object()
        definition, key = body.get("processDefinitionId"), body.get("processDefinitionKey")
        for name, value in (("processDefinitionId", definition), ("processDefinitionKey", key),
                            ("businessKey", body.get("businessKey")), ("tenantId", body.get("tenantId"))):
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 255):
                raise InvalidInput(f"{name} must be a non-empty string of at most 255 characters")
        if not definition and not key:
            raise InvalidInput("processDefinitionId or processDefinitionKey is required")
        typed = parse_items(body.get("variables", []))
        ref = ModelRef(deployment_id=definition.rsplit(":", 1)[-1]) if definition else ModelRef(key=key)
        try:
            proc, created = service().start(
                ref, body.get("businessKey") or (key or definition), {n: v for n, (_, v) in typed.items()},
                business_key=body.get("businessKey"), tenant_id=body.get("tenantId"),
                variable_types={n: t for n, (t, _) in typed.items()},
                idempotency=idempotency("runtime", body))
        except NotFound as exc:  # the second seed answers 400 for an unknown definition
            raise InvalidInput(exc.message) from exc
        return _view(proc), 201 if created else 200


@ns.route("/process-instances/<string:processInstanceId>")
@ns.param("processInstanceId", "the process instance id")
class ProcessInstance(Resource):
    @ns.response(200, "the process instance", INSTANCE)
    @ns.response(404, "no such running process instance", ERROR)
    def get(self, processInstanceId: str):
        """A running process instance."""
        proc, activity = service().get_runtime_process(processInstanceId)
        return instance_view(proc, activity)

    @ns.expect(ACTION)
    @ns.response(200, "done: the process instance", INSTANCE)
    @ns.response(400, "an unknown action, or an unknown activity to jump to", ERROR)
    @ns.response(404, "no such running process instance", ERROR)
    @ns.response(409, "already suspended / already active", ERROR)
    def put(self, processInstanceId: str):
        """suspend (no new task is dispatched), activate, or jumpToActivity."""
        body = json_body_object()
        action = body.get("action")
        if action in ("suspend", "activate"):
            service().set_suspended(processInstanceId, action == "suspend")
            proc, activity = service().get_runtime_process(processInstanceId)
            return instance_view(proc, activity)
        if action == "jumpToActivity":
            activity_id = body.get("activityId")
            if not isinstance(activity_id, str) or not activity_id:
                raise InvalidInput("jumpToActivity needs activityId")
            proc, activity = service().jump_to_activity(processInstanceId, activity_id)
            return instance_view(proc, activity)
        raise InvalidInput(f"unknown action {action!r}: use suspend, activate or jumpToActivity")

    @ns.response(204, "deleted: the process instance is canceled")
    @ns.response(404, "no such running process instance", ERROR)
    def delete(self, processInstanceId: str):
        """Delete (cancel) a running process instance."""
        service().delete_runtime_process(processInstanceId)
        return "", 204


@ns.route("/process-instances/<string:processInstanceId>/variables")
@ns.param("processInstanceId", "the process instance id")
class Variables(Resource):
    @ns.response(200, "the variables", [VARIABLE])
    @ns.response(404, "no such running process instance", ERROR)
    def get(self, processInstanceId: str):
        """The process instance's variables."""
        return [variable_view(n, t, v) for n, t, v in service().get_variables(processInstanceId)]

    @ns.expect([VARIABLE])
    @ns.response(201, "created", [VARIABLE])
    @ns.response(400, "a variable that is not valid", ERROR)
    @ns.response(404, "no such running process instance", ERROR)
    @ns.response(409, "a variable of that name exists (PUT updates)", ERROR)
    def post(self, processInstanceId: str):
        """Create variables; none may exist yet."""
        items = parse_items(json_value())
        created = service().set_variables(processInstanceId, items, create_only=True)
        return [variable_view(n, t, v) for n, t, v in created], 201

    @ns.expect([VARIABLE])
    @ns.response(201, "created or updated", [VARIABLE])
    @ns.response(400, "a variable that is not valid", ERROR)
    @ns.response(404, "no such running process instance", ERROR)
    def put(self, processInstanceId: str):
        """Create or update variables."""
        items = parse_items(json_value())
        return [variable_view(n, t, v) for n, t, v in service().set_variables(processInstanceId, items)], 201


@ns.route("/process-instances/<string:processInstanceId>/variables/<string:variableName>")
@ns.param("processInstanceId", "the process instance id")
@ns.param("variableName", "the variable's name")
class Variable(Resource):
    @ns.response(200, "the variable", VARIABLE)
    @ns.response(404, "no such running process instance or variable", ERROR)
    def get(self, processInstanceId: str, variableName: str):
        """One variable."""
        for name, kind, value in service().get_variables(processInstanceId):
            if name == variableName:
                return variable_view(name, kind, value)
        raise NotFound(f"process instance {processInstanceId} has no variable {variableName!r}")

    @ns.expect(VARIABLE)
    @ns.response(200, "updated", VARIABLE)
    @ns.response(400, "not a valid variable, or its name differs from the path", ERROR)
    @ns.response(404, "no such running process instance or variable", ERROR)
    def put(self, processInstanceId: str, variableName: str):
        """Update one existing variable."""
        body = json_body_object()
        if body.get("name", variableName) != variableName:
            raise InvalidInput(f"the body names {body.get('name')!r}, the path {variableName!r}")
        items = parse_items([{**body, "name": variableName}])
        (name, kind, value), = service().set_variables(processInstanceId, items, must_exist=True)
        return variable_view(name, kind, value)


@ns.route("/ext/assigncheck")
class AssignCheck(Resource):
    @ns.expect(ASSIGN_CHECK)
    @ns.response(200, "the participants of the definition's user tasks", ASSIGN_ANSWER)
    @ns.response(400, "neither processDefinitionId nor processDefinitionKey", ERROR)
    @ns.response(404, "no such definition, or no user task with assignments for activityId", ERROR)
    def post(self):
        """Who takes part in the user tasks (assignee, candidate users and groups, lanes) of a definition."""
        body = json_body_object()
        for name in ("processDefinitionId", "processDefinitionKey", "activityId", "taskId", "executionId"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise InvalidInput(f"{name} must be a string")
        items = service().assignments(definition_id=body.get("processDefinitionId"),
                                      definition_key=body.get("processDefinitionKey"),
                                      activity_id=body.get("activityId"))
        return {"assignInfo": {"taskId": body.get("taskId"), "executionId": body.get("executionId"),
                               "assignInfoItems": items}}
