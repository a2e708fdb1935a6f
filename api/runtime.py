"""``runtime/``: the second seed's process-instance API, a second face of the same processes."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_restx import Resource

from api.activiti import (
    ACTION,
    ACTIONS,
    ASSIGN_ANSWER,
    ASSIGN_CHECK,
    INSTANCE,
    INSTANCE_PAGE,
    MAX_DEFINITION_ID,
    PROCESS_FILTERS,
    START,
    VARIABLE,
    VARIABLE_DESCRIPTION,
    VARIABLE_IN,
    VARIABLE_UPDATE,
    instance_view,
    list_instances,
    namespace,
    query_params,
    query_string,
    resolve_definition,
    service,
    variable_view,
)
from api.body import MAX_DEPTH, PUBLIC_ID_PATTERN, json_object, json_value, public_id
from api.idempotency import HEADER, HEADER_DOC, idempotency
from api.schemas import ECMA_SPACE, MAX_NAME, error_responses
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.service import ModelRef
from orchestrator.variables import parse_items

PATH = "/runtime"
ns = namespace("runtime", "Activiti-style process instances (second seed)")
ID_PARAM = {"description": "the process instance id: a decimal number (anything else is 404)",
            "pattern": PUBLIC_ID_PATTERN, "x-example": "1"}
IDEMPOTENCY_HEADER = {HEADER: {**HEADER_DOC[HEADER], "minLength": 1, "maxLength": 255}}
BODY_LIMITS = f"The whole body nests at most {MAX_DEPTH} levels of objects and arrays, the body itself being one."
BAD_JSON = ("malformed JSON, a body of the wrong shape, a field of the wrong type, NUL characters, lone "
            "surrogates, non-finite numbers or nesting deeper than the limit")

def _name(body: dict[str, Any], name: str, max_length: int = MAX_NAME) -> str | None:
    """An optional name in a body: null is absent; else a string of 1 to ``max_length`` characters, not blank."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip(ECMA_SPACE) or len(value) > max_length:
        raise InvalidInput(f"{name} must be a non-empty string of at most {max_length} characters")
    return value


def _variables(value: Any) -> dict[str, tuple[str, Any]]:
    return parse_items([] if value is None else value)


@ns.route("/process-instances")
@ns.doc(security="bearer")
class ProcessInstances(Resource):
    @ns.doc(params=query_params(PROCESS_FILTERS))
    @ns.response(200, "a page of running process instances", INSTANCE_PAGE)
    @error_responses(ns, {400: "a filter, sort field or paging value that is not valid (of the wrong type, "
                               "too long, NUL characters, out of range)", 401: None})
    def get(self) -> Any:
        """List running process instances, with the second seed's filters and paging."""
        return list_instances(query_string())

    @ns.expect((START, "One of processDefinitionId or processDefinitionKey is needed (processDefinitionId wins). "
                       + BODY_LIMITS))
    @ns.doc(params=IDEMPOTENCY_HEADER)
    @ns.response(201, "started", INSTANCE)
    @ns.response(200, "an Idempotency-Key seen before with the same body: that process", INSTANCE)
    @error_responses(ns, {400: "no such process definition, variables that are not valid, or " + BAD_JSON,
                          401: None, 409: "the Idempotency-Key was used with another body", 413: None,
                          415: "not application/json (UTF-8)"})
    def post(self) -> Any:
        """Start a process instance by processDefinitionId or processDefinitionKey."""
        body = json_object()
        definition = _name(body, "processDefinitionId", MAX_DEFINITION_ID)
        key = _name(body, "processDefinitionKey")
        business_key, tenant_id = _name(body, "businessKey"), _name(body, "tenantId")
        typed = _variables(body.get("variables"))
        if definition is None and key is None:
            raise InvalidInput("processDefinitionId or processDefinitionKey is required")
        if definition is not None:
            dep = resolve_definition(definition)
            if dep is None:  # the second seed answers 400 for an unknown definition
                raise InvalidInput(f"process definition {definition!r} not found")
            ref, label = ModelRef(deployment_id=dep.deployment_id), dep.key
        else:
            ref, label = ModelRef(key=key), key
        try:
            proc, created = service().start(
                ref, business_key or label, {n: v for n, (_, v) in typed.items()},
                business_key=business_key, tenant_id=tenant_id,
                variable_types={n: t for n, (t, _) in typed.items()}, idempotency=idempotency("runtime", body))
        except NotFound as exc:
            raise InvalidInput(exc.message) from exc
        return instance_view(proc, service().activity_of(proc.pk)), 201 if created else 200


@ns.route("/process-instances/<string:processInstanceId>")
@ns.param("processInstanceId", **ID_PARAM)
@ns.doc(security="bearer")
class ProcessInstance(Resource):
    @ns.response(200, "the process instance", INSTANCE)
    @error_responses(ns, {401: None, 404: "no such running process instance"})
    def get(self, processInstanceId: str) -> Any:
        """A running process instance."""
        proc, activity = service().get_runtime_process(public_id(processInstanceId, "process instance"))
        return instance_view(proc, activity)

    @ns.expect((ACTION, BODY_LIMITS))
    @ns.response(200, "done: the process instance", INSTANCE)
    @error_responses(ns, {400: "an unknown action, jumpToActivity without activityId or to something that is not "
                               "an activity of the process, or " + BAD_JSON,
                          401: None, 404: "no such running process instance",
                          409: "already suspended / already active, a jump inside a sub-process, or the process "
                               "changed concurrently",
                          413: None, 415: "not application/json (UTF-8)"})
    def put(self, processInstanceId: str) -> Any:
        """suspend (no new task is dispatched), activate, or jumpToActivity."""
        pid = public_id(processInstanceId, "process instance")
        body = json_object()
        action = body.get("action")
        if not isinstance(action, str) or action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}: use suspend, activate or jumpToActivity"[:300])
        if action != "jumpToActivity":
            proc = service().set_suspended(pid, action == "suspend")
            return instance_view(proc, service().activity_of(proc.pk))
        activity_id = body.get("activityId")
        if not isinstance(activity_id, str) or not activity_id or len(activity_id) > MAX_NAME:
            raise InvalidInput("jumpToActivity needs activityId, the BPMN id of an activity")
        if body.get("jumpOrigin") is not None and not isinstance(body["jumpOrigin"], str):
            raise InvalidInput("jumpOrigin must be a string")
        proc, activity = service().jump_to_activity(pid, activity_id)
        return instance_view(proc, activity)

    @ns.response(204, "deleted: the process instance is canceled (its cancel process stops the tasks in flight)")
    @error_responses(ns, {401: None, 404: "no such running process instance",
                          409: "a sub-process (delete its parent), or the process changed concurrently"})
    def delete(self, processInstanceId: str) -> Any:
        """Delete (cancel) a running process instance."""
        service().delete_runtime_process(public_id(processInstanceId, "process instance"))
        return current_app.response_class(status=204, mimetype="application/json")  # the produced type, no body


VARIABLES_IN = ([VARIABLE_IN], "a list of variables: " + VARIABLE_DESCRIPTION + ". " + BODY_LIMITS)


@ns.route("/process-instances/<string:processInstanceId>/variables")
@ns.param("processInstanceId", **ID_PARAM)
@ns.doc(security="bearer")
class Variables(Resource):
    @ns.response(200, "the variables, by name", [VARIABLE])
    @error_responses(ns, {401: None, 404: "no such running process instance"})
    def get(self, processInstanceId: str) -> Any:
        """The process instance's variables."""
        pid = public_id(processInstanceId, "process instance")
        return [variable_view(n, t, v) for n, t, v in service().get_variables(pid)]

    @ns.expect(VARIABLES_IN)
    @ns.response(201, "created: the variables as stored", [VARIABLE])
    @error_responses(ns, {400: "a variable that is not valid (no name, a reserved name, a name given twice, a value "
                               "of another type), or " + BAD_JSON,
                          401: None, 404: "no such running process instance",
                          409: "a variable of that name exists (PUT updates), the instance is a sub-process (its "
                               "variables are its parent's), or the process changed concurrently",
                          413: None, 415: "not application/json (UTF-8)"})
    def post(self, processInstanceId: str) -> Any:
        """Create variables; none may exist yet."""
        pid = public_id(processInstanceId, "process instance")
        items = parse_items(json_value())
        created = service().set_variables(pid, items, create_only=True)
        return [variable_view(n, t, v) for n, t, v in created], 201

    @ns.expect(VARIABLES_IN)
    @ns.response(201, "created or updated: the variables as stored", [VARIABLE])
    @error_responses(ns, {400: "a variable that is not valid (no name, a reserved name, a name given twice, a value "
                               "of another type), or " + BAD_JSON,
                          401: None, 404: "no such running process instance",
                          409: "the instance is a sub-process (its variables are its parent's), or the process "
                               "changed concurrently",
                          413: None, 415: "not application/json (UTF-8)"})
    def put(self, processInstanceId: str) -> Any:
        """Create or update variables."""
        pid = public_id(processInstanceId, "process instance")
        items = parse_items(json_value())
        return [variable_view(n, t, v) for n, t, v in service().set_variables(pid, items)], 201


# ``path``: a variable's name may hold a slash (sent encoded as %2F, which the server decodes).
@ns.route("/process-instances/<string:processInstanceId>/variables/<path:variableName>")
@ns.param("processInstanceId", **ID_PARAM)
@ns.param("variableName", "the variable's name", **{"x-example": "size"})
@ns.doc(security="bearer")
class Variable(Resource):
    @ns.response(200, "the variable", VARIABLE)
    @error_responses(ns, {401: None, 404: "no such running process instance or variable"})
    def get(self, processInstanceId: str, variableName: str) -> Any:
        """One variable."""
        pid = public_id(processInstanceId, "process instance")
        for name, kind, value in service().get_variables(pid):
            if name == variableName:
                return variable_view(name, kind, value)
        raise NotFound(f"variable {variableName!r} not found in process instance {pid}"[:300])

    @ns.expect((VARIABLE_UPDATE, VARIABLE_DESCRIPTION + ". " + BODY_LIMITS))
    @ns.response(200, "updated: the variable as stored", VARIABLE)
    @error_responses(ns, {400: "not a valid variable, a name that differs from the path, or " + BAD_JSON,
                          401: None, 404: "no such running process instance or variable",
                          409: "the instance is a sub-process (its variables are its parent's), or the process "
                               "changed concurrently",
                          413: None, 415: "not application/json (UTF-8)"})
    def put(self, processInstanceId: str, variableName: str) -> Any:
        """Update one existing variable."""
        pid = public_id(processInstanceId, "process instance")
        body = json_object()
        if body.get("name") is not None and body["name"] != variableName:
            raise InvalidInput(f"the body names {body['name']!r}, the path {variableName!r}"[:300])
        items = parse_items([{**body, "name": variableName}])
        (name, kind, value), = service().set_variables(pid, items, must_exist=True)
        return variable_view(name, kind, value)


@ns.route("/ext/assigncheck")
@ns.doc(security="bearer")
class AssignCheck(Resource):
    @ns.expect((ASSIGN_CHECK, "One of processDefinitionId or processDefinitionKey is needed. " + BODY_LIMITS))
    @ns.response(200, "the participants of the definition's user tasks", ASSIGN_ANSWER)
    @error_responses(ns, {400: "neither processDefinitionId nor processDefinitionKey, or " + BAD_JSON, 401: None,
                          404: "no such definition, or no user task with assignments for activityId", 413: None,
                          415: "not application/json (UTF-8)"})
    def post(self) -> Any:
        """Who takes part in the user tasks (assignee, candidate users and groups, lanes) of a definition."""
        body = json_object()
        for name in ("processDefinitionId", "processDefinitionKey", "activityId", "taskId", "executionId"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise InvalidInput(f"{name} must be a string")
        for name, limit in (("processDefinitionId", MAX_DEFINITION_ID), ("processDefinitionKey", MAX_NAME),
                            ("activityId", MAX_NAME)):
            if len(body.get(name) or "") > limit:
                raise InvalidInput(f"{name} is longer than {limit} characters")
        items = service().assignments(definition_id=body.get("processDefinitionId") or None,
                                      definition_key=body.get("processDefinitionKey") or None,
                                      activity_id=body.get("activityId"))
        return {"assignInfo": {"taskId": body.get("taskId"), "executionId": body.get("executionId"),
                               "assignInfoItems": items}}
