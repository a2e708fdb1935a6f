"""Shared pieces of the Activiti-style face (second seed): representations, their OpenAPI models,
strict reading of filters and paging.

Field names, paths and codes are the second seed's. The models describe the answers truthfully (what
can be null is ``x-nullable``) and ``tests/integration/test_openapi_activiti.py`` holds the two to each
other. Filters come from a query string (text) or a JSON query body (typed values): either way a value
of the wrong type or shape, NUL characters or text longer than the columns is 400 before any SQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from flask import current_app, request
from flask_restx import Model, Namespace, fields

from api.body import PUBLIC_ID_PATTERN, UUID_PATTERN, check_text
from api.current import service
from api.schemas import BEARER, ERROR, MAX_NAME, NOT_BLANK, Integer, String, _Nullable, _out
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.service import RUNTIME, definition_id
from orchestrator.store import PROCESS_SORTS, ProcessQuery
from orchestrator.variables import OPERATIONS, QUERY_TYPES, TYPES, typed_variables

# A page holds at most this many items; a larger ``size`` is clamped to it (not refused).
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 10
# ``start`` and ``version`` beyond this are refused: the database's integers end somewhere.
MAX_INT = 2**31 - 1
# ``key:version:deploymentId``: a key of at most MAX_NAME characters, a version, a uuid.
MAX_DEFINITION_ID = MAX_NAME + 1 + len(str(MAX_INT)) + 1 + 36
# ``key:version:deploymentId``, or a bare deployment id (a key may hold any character, colons and newlines too).
DEFINITION_ID_PATTERN = r"(^|[\s\S]:[0-9]{1,10}:)" + UUID_PATTERN[1:]
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
ORDERS = ["asc", "desc"]
ACTIONS = ["suspend", "activate", "jumpToActivity"]
PARTICIPANT_TYPES = ["assignee", "candidateUser", "candidateGroup", "lane"]
DEPLOYMENT_FIELDS = {"id": "deployment_id", "name": "name", "deployTime": "created_at", "tenantId": None}
DEFINITION_SORTS = {"id": "deployment_id", "key": "key", "name": "name", "version": "version",
                    "deploymentId": "deployment_id"}


def base() -> str:
    return request.host_url.rstrip("/")


# ------------------------------------------------------------------ OpenAPI models

class Boolean(_Nullable, fields.Boolean):
    pass


class List(_Nullable, fields.List):
    pass


class AnyValue(_Nullable, fields.Raw):
    """Any JSON value: no ``type`` in the schema (``fields.Raw`` would say object)."""

    __schema_type__ = None


PID = {"pattern": PUBLIC_ID_PATTERN, "example": "7"}
UUID_EXAMPLE = "43a9f3e4-8a85-4df0-b1cc-0333be9fc0c8"
DEFINITION_EXAMPLE = f"noop_chain:1:{UUID_EXAMPLE}"


def _text_in(description: str, max_length: int = MAX_NAME, **kw: Any) -> Any:
    """An optional text field of a request: null counts as absent."""
    return String(description=description, nullable=True, max_length=max_length, **kw)


def _name_in(description: str, **kw: Any) -> Any:
    """An optional name of a request: 1 to 255 characters, not blank; null counts as absent."""
    return String(description=f"{description}; not blank, at most {MAX_NAME} characters", nullable=True,
                  min_length=1, max_length=MAX_NAME, pattern=NOT_BLANK, **kw)


VARIABLE = Model("Variable", {
    "name": _out(String, "the variable's name", example="intProcVar"),
    "type": _out(String, "the type it was given (or, without one or when the value no longer fits it, the "
                         "value's own: string, integer, long, double, boolean or json)", enum=list(TYPES)),
    "value": _out(AnyValue, "the value (any JSON value; a date is an ISO 8601 string)", example=123),
    "scope": _out(String, "always local", enum=["local"]),
})
VARIABLE_DESCRIPTION = ("a process variable. Names starting with __ and the name orch are reserved. type: "
                        f"{', '.join(TYPES)} (date: an ISO 8601 string; without a type, the value's own); a value "
                        "that does not fit its type is 400 (short, integer and long are 16, 32 and 64 bit integers; "
                        "double any finite number); null fits every type")
VARIABLE_IN = Model("VariableInput", {
    "name": String(required=True, min_length=1, pattern=NOT_BLANK, description="not blank", example="intProcVar"),
    "type": String(nullable=True, enum=list(TYPES), description="default: the value's own", example="integer"),
    "value": AnyValue(required=True, description="the value, of the given type", example=123),
})
VARIABLE_UPDATE = Model("VariableUpdate", {
    "name": String(nullable=True, description="the name in the path, if given", example="intProcVar"),
    "type": String(nullable=True, enum=list(TYPES), description="default: the value's own", example="integer"),
    "value": AnyValue(required=True, description="the value, of the given type", example=123),
})

INSTANCE = Model("ProcessInstance", {
    "id": _out(String, "the process instance id (the first face's processInstanceId)", **PID),
    "url": _out(String, "this process instance in the runtime API"),
    "businessKey": _out(String, "as given at start", nullable=True),
    "suspended": _out(fields.Boolean, "a suspended process dispatches no new task"),
    "ended": _out(fields.Boolean, "true only in the answer to an action that ended the process"),
    "completed": _out(fields.Boolean, "true only if that action made it end successfully"),
    "processDefinitionId": _out(String, "key:version:deploymentId", nullable=True, example=DEFINITION_EXAMPLE),
    "processDefinitionUrl": _out(String, "the process definition in the repository API", nullable=True),
    "activityId": _out(String, "BPMN id of the current activity (the latest unfinished task); null between "
                               "tasks", nullable=True, example="t1"),
    "tenantId": _out(String, "as given at start", nullable=True),
    "variables": fields.List(fields.Nested(VARIABLE), description="only with includeProcessVariables=true"),
})


def page_model(name: str, item: Model, sorts: Mapping[str, Any]) -> Model:
    return Model(name, {
        "data": _out(fields.List, "this page's items", cls_or_instance=fields.Nested(item)),
        "total": _out(Integer, "how many match in all", min=0),
        "start": _out(Integer, "index of the first item", min=0),
        "sort": _out(String, "the sort field", enum=list(sorts)),
        "order": _out(String, "the sort order", enum=ORDERS),
        "size": _out(Integer, f"how many items data holds (at most {MAX_PAGE_SIZE})", min=0, max=MAX_PAGE_SIZE),
    })


INSTANCE_PAGE = page_model("ProcessInstancePage", INSTANCE, PROCESS_SORTS)
START = Model("StartProcessInstance", {
    "processDefinitionId": _text_in("key:version:deploymentId, or a bare deploymentId", MAX_DEFINITION_ID,
                                    min_length=1, pattern=DEFINITION_ID_PATTERN, example=DEFINITION_EXAMPLE),
    "processDefinitionKey": _name_in("the latest version of this key", example="noop_chain"),
    "businessKey": _name_in("free text, kept with the process (also its processName on the first face)",
                            example="myBusinessKey"),
    "tenantId": _name_in("the tenant", example="tenant1"),
    "variables": List(fields.Nested(VARIABLE_IN), nullable=True, description="the start variables"),
})
ACTION = Model("ProcessInstanceAction", {
    "action": String(required=True, enum=ACTIONS, description="suspend: no new task is dispatched; activate: "
                                                              "what became ready is dispatched now; "
                                                              "jumpToActivity: see activityId"),
    "activityId": _text_in("jumpToActivity (required there): the BPMN id of the activity (a task, call activity "
                           "or sub-process of the process) to run next", min_length=1, example="t3"),
    "jumpOrigin": String(nullable=True, description="jumpToActivity: free text, not kept"),
})
ASSIGN_CHECK = Model("AssignCheck", {
    "processDefinitionId": _text_in("key:version:deploymentId (wins over processDefinitionKey)", MAX_DEFINITION_ID,
                                    example=DEFINITION_EXAMPLE),
    "processDefinitionKey": _text_in("the latest version of this key", example="noop_chain"),
    "activityId": _text_in("only this user task", example="approve"),
    "taskId": String(nullable=True, description="echoed in the answer"),
    "executionId": String(nullable=True, description="echoed in the answer"),
})
PARTICIPANT = Model("Participant", {
    "id": _out(String, "the user, group or lane id"),
    "code": _out(String, "the same as id"),
    "name": _out(String, "the lane's name, else the id"),
    "type": _out(String, "how it takes part", enum=PARTICIPANT_TYPES),
})
ASSIGN_ITEM = Model("AssignInfoItem", {
    "activityId": _out(String, "the user task's BPMN id"),
    "activityName": _out(String, "its name, else its id"),
    "participants": _out(fields.List, "assignee, candidate users and groups, lanes",
                         cls_or_instance=fields.Nested(PARTICIPANT)),
})
ASSIGN_INFO = Model("AssignInfo", {
    "taskId": _out(String, "as in the request", nullable=True),
    "executionId": _out(String, "as in the request", nullable=True),
    "assignInfoItems": _out(fields.List, "one per user task", cls_or_instance=fields.Nested(ASSIGN_ITEM)),
})
ASSIGN_ANSWER = Model("AssignCheckAnswer", {"assignInfo": _out(fields.Nested, "", model=ASSIGN_INFO)})

VARIABLE_FILTER = Model("VariableFilter", {
    "name": String(required=True, min_length=1, description="the variable's name", example="myVariable"),
    "value": AnyValue(required=True, description="the value to compare with, of the given type", example=1234),
    "operation": String(nullable=True, enum=list(OPERATIONS), description="default equals; like takes % (any "
                                                                          "text) and _ (one character), \\ "
                                                                          "escapes; booleans: equals, notEquals"),
    "type": String(nullable=True, enum=list(QUERY_TYPES), description="default: the value's own", example="long"),
})

DEPLOYMENT = Model("Deployment", {
    "id": _out(String, "the deployment id", pattern=UUID_PATTERN, example=UUID_EXAMPLE),
    "name": _out(String, "the model's name", nullable=True),
    "deploymentTime": _out(String, "UTC, ISO 8601 with milliseconds", pattern=ISO_TIME_PATTERN,
                           example="2018-08-13T14:15:24.123Z"),
    "category": _out(String, "not supported: always null", nullable=True),
    "url": _out(String, "this deployment in the repository API"),
    "tenantId": _out(String, "not supported: always null", nullable=True),
})
DEPLOYMENT_PAGE = page_model("DeploymentPage", DEPLOYMENT, DEPLOYMENT_FIELDS)
DEFINITION = Model("ProcessDefinition", {
    "id": _out(String, "key:version:deploymentId", pattern=DEFINITION_ID_PATTERN, example=DEFINITION_EXAMPLE),
    "url": _out(String, "this definition in the repository API"),
    "key": _out(String, "the model's key", example="noop_chain"),
    "version": _out(Integer, "1, 2, ... per key", min=1),
    "name": _out(String, "the model's name", nullable=True),
    "description": _out(String, "not supported: always null", nullable=True),
    "deploymentId": _out(String, "its deployment", pattern=UUID_PATTERN, example=UUID_EXAMPLE),
    "deploymentUrl": _out(String, "its deployment in the repository API"),
    "resource": _out(String, "the BPMN document's URL"),
    "diagramResource": _out(String, "not supported: always null", nullable=True),
    "category": _out(String, "not supported: always null", nullable=True),
    "graphicalNotationDefined": _out(fields.Boolean, "always false"),
    "suspended": _out(fields.Boolean, "always false"),
    "startFormDefined": _out(fields.Boolean, "always false"),
    "tenantId": _out(String, "not supported: always null", nullable=True),
})
DEFINITION_PAGE = page_model("ProcessDefinitionPage", DEFINITION, DEFINITION_SORTS)


# ------------------------------------------------------------------ filters and paging, described once

class Filter:
    """One filter or paging parameter: how it reads, and how it is documented in a query string and in a body."""

    def __init__(self, name: str, kind: str, description: str, **schema: Any):
        self.name, self.kind, self.description, self.schema = name, kind, description, schema

    def param(self) -> dict[str, Any]:
        """As a query-string parameter (Swagger 2.0)."""
        kind = {"text": "string", "like": "string", "enum": "string"}.get(self.kind, self.kind)
        return {"in": "query", "type": kind, "description": self.description, **self.schema}

    def field(self) -> Any:
        """As a field of a JSON query body: null counts as absent."""
        schema = {{"maxLength": "max_length", "minLength": "min_length", "minimum": "min",
                   "maximum": "max"}.get(k, k): v for k, v in self.schema.items()}
        cls = {"boolean": Boolean, "integer": Integer}.get(self.kind, String)
        return cls(description=self.description, nullable=True, **schema)


def _text_filter(name: str, description: str, like: bool = False) -> Filter:
    if like:
        description += " (LIKE: % any text, _ one character; a trailing lone \\ is refused)"
    return Filter(name, "like" if like else "text", f"{description}; at most {MAX_NAME} characters",
                  maxLength=MAX_NAME)


def _flag(name: str, description: str) -> Filter:
    return Filter(name, "boolean", description)


def paging_filters(sorts: Mapping[str, Any], default: str) -> list[Filter]:
    return [
        Filter("sort", "enum", f"sort field (default {default})", enum=list(sorts)),
        Filter("order", "enum", "asc (default) or desc", enum=ORDERS),
        Filter("start", "integer", f"index of the first result (default 0, at most {MAX_INT})", minimum=0,
               maximum=MAX_INT),
        Filter("size", "integer", f"page size (default {DEFAULT_PAGE_SIZE}; larger than {MAX_PAGE_SIZE}: clamped "
                                  f"to {MAX_PAGE_SIZE}, not refused)", minimum=1),
    ]


PROCESS_FILTERS = [
    _text_filter("id", "only the process instance with this id"),
    _text_filter("processDefinitionKey", "only instances of this process definition key"),
    Filter("processDefinitionId", "text", "only instances of this process definition id (key:version:deploymentId)",
           maxLength=MAX_DEFINITION_ID),
    _text_filter("businessKey", "only instances with this business key"),
    _text_filter("involvedUser", "only instances whose model's user tasks name this user (assignee or candidate)"),
    _flag("suspended", "true: only suspended instances; false: only active ones"),
    _text_filter("superProcessInstanceId", "only the sub-processes (call activities) of this instance"),
    _text_filter("subProcessInstanceId", "only the instance that has this sub-process"),
    _flag("excludeSubprocesses", "true: no sub-processes"),
    _flag("includeProcessVariables", "true: each instance's variables are in the answer"),
    _text_filter("tenantId", "only instances of this tenant"),
    _text_filter("tenantIdLike", "only instances whose tenant matches this pattern", like=True),
    _flag("withoutTenantId", "true: only instances without a tenant; false: ignored"),
    *paging_filters(PROCESS_SORTS, "id"),
]
DEPLOYMENT_FILTERS = [
    _text_filter("name", "only deployments of this name"),
    _text_filter("nameLike", "only deployments whose name matches this pattern", like=True),
    *paging_filters(DEPLOYMENT_FIELDS, "id"),
]
DEFINITION_FILTERS = [
    _text_filter("key", "only definitions of this key"),
    _text_filter("keyLike", "only definitions whose key matches this pattern", like=True),
    _text_filter("name", "only definitions of this name"),
    _text_filter("nameLike", "only definitions whose name matches this pattern", like=True),
    Filter("version", "integer", "only this version", minimum=1, maximum=MAX_INT),
    _flag("latest", "true: only the latest version of each key"),
    Filter("deploymentId", "text", "only the definition of this deployment", maxLength=36),
    *paging_filters(DEFINITION_SORTS, "key"),
]


def query_params(filters: list[Filter]) -> dict[str, dict[str, Any]]:
    return {f.name: f.param() for f in filters}


QUERY = Model("ProcessInstanceQuery", {
    **{f.name: f.field() for f in PROCESS_FILTERS},
    "variables": List(fields.Nested(VARIABLE_FILTER), nullable=True, description="filters on the variables: "
                                                                                 "every one must hold"),
})

MODELS = [ERROR, VARIABLE, VARIABLE_IN, VARIABLE_UPDATE, INSTANCE, INSTANCE_PAGE, START, ACTION, ASSIGN_CHECK,
          PARTICIPANT, ASSIGN_ITEM, ASSIGN_INFO, ASSIGN_ANSWER, VARIABLE_FILTER, QUERY, DEPLOYMENT, DEPLOYMENT_PAGE,
          DEFINITION, DEFINITION_PAGE]


def namespace(name: str, description: str) -> Namespace:
    """A namespace of this face: bearer security, this face's models and the shared error model registered."""
    ns = Namespace(name, description=description, authorizations=BEARER)
    for model in MODELS:
        ns.add_model(model.name, model)
    return ns


class Params:
    """Filters and paging from a query string (``typed=False``: every value text) or a JSON query body
    (``typed=True``: strings, booleans and integers as JSON has them). Null or absent: the default."""

    def __init__(self, values: Mapping[str, Any], typed: bool):
        self.values, self.typed = values, typed

    def _get(self, name: str) -> Any:
        value = self.values.get(name)
        if not self.typed and value == "":
            return None  # ``?size=``: as if not given
        return value

    def text(self, name: str, max_length: int = MAX_NAME) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string")
        check_text(value)
        if len(value) > max_length:
            raise InvalidInput(f"{name} is longer than {max_length} characters")
        return value

    def like(self, name: str) -> str | None:
        """A LIKE pattern; a trailing lone ``\\`` escapes nothing (PostgreSQL refuses it)."""
        value = self.text(name)
        if value is not None and (len(value) - len(value.rstrip("\\"))) % 2:
            raise InvalidInput(f"{name} ends with a lone escape character \\")
        return value

    def flag(self, name: str) -> bool | None:
        value = self._get(name)
        if value is None or isinstance(value, bool):
            return value
        if not self.typed and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InvalidInput(f"{name} must be true or false, got {value!r}"[:200])

    def number(self, name: str, default: int | None, minimum: int, maximum: int | None = None) -> int | None:
        value = self._get(name)
        if value is None:
            return default
        if self.typed:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(f"{name} must be an integer")
            number = value
        else:
            if not re.fullmatch(r"-?[0-9]+", value):  # ASCII digits only: int() also takes "١" and "1_0"
                raise InvalidInput(f"{name} must be an integer, got {value!r}"[:200])
            digits = value.lstrip("-")
            # Past 18 digits the exact value does not matter (and int() refuses over 4300 of them).
            number = int(value) if len(digits) <= 18 else (-1 if value.startswith("-") else 1) * 10**18
        if number < minimum:
            raise InvalidInput(f"{name} must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise InvalidInput(f"{name} must be at most {maximum}")
        return number

    def choice(self, name: str, choices: Any, default: str) -> str:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got {value!r}"[:300])
        return value


def query_string() -> Params:
    return Params(request.args.to_dict(), typed=False)


def paging(params: Params, sorts: Mapping[str, Any], default_sort: str) -> tuple[int, int, str, str]:
    """``start``, ``size`` (clamped to ``MAX_PAGE_SIZE``), ``sort`` (one of ``sorts``), ``order``."""
    start = params.number("start", 0, 0, MAX_INT)
    size = min(params.number("size", DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
    sort = params.choice("sort", sorts, default_sort)
    order = params.choice("order", ORDERS, "asc")
    return start, size, sort, order  # type: ignore[return-value]


def envelope(data: list[Any], total: int, start: int, sort: str, order: str) -> dict[str, Any]:
    return {"data": data, "total": total, "start": start, "sort": sort, "order": order, "size": len(data)}


def _optional_id(params: Params, name: str) -> int | None:
    text = params.text(name)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        return -1  # no process has such an id: the filter matches nothing
    return int(text)


def resolve_definition(value: str, with_documents: bool = False) -> Any | None:
    """The deployment a process-definition id names, or ``None`` (the service checks the id's shape)."""
    try:
        return service().get_definition(value, with_documents=with_documents)
    except NotFound:
        return None


def process_query(params: Params) -> tuple[ProcessQuery, str | None, bool]:
    """The second seed's list filters (query string or query body) into a ``ProcessQuery``."""
    start, size, sort, order = paging(params, PROCESS_SORTS, "id")
    definition = params.text("processDefinitionId", MAX_DEFINITION_ID)
    q = ProcessQuery(
        id=_optional_id(params, "id"),
        definition_key=params.text("processDefinitionKey"),
        business_key=params.text("businessKey"),
        suspended=params.flag("suspended"),
        super_pk=_optional_id(params, "superProcessInstanceId"),
        sub_pk=_optional_id(params, "subProcessInstanceId"),
        exclude_subprocesses=bool(params.flag("excludeSubprocesses")),
        tenant_id=params.text("tenantId"),
        tenant_id_like=params.like("tenantIdLike"),
        without_tenant_id=bool(params.flag("withoutTenantId")),
        sort=sort, order=order, start=start, size=size)
    user = params.text("involvedUser")
    include = bool(params.flag("includeProcessVariables"))
    if definition is not None:  # checked last: the only filter that reads the database
        dep = resolve_definition(definition)
        q.deployment_ids = [dep.deployment_id] if dep is not None else []
    return q, user, include


def list_instances(params: Params, variable_filters: list[Any] | None = None) -> dict[str, Any]:
    """A page of runtime process instances (the runtime list and the query)."""
    q, user, include = process_query(params)
    rows, total, activities, variables = service().query_processes(
        q, involved_user=user, variable_filters=variable_filters, with_variables=include)
    data = [instance_view(r, activities.get(r.pk), variables.get(r.pk) if include else None) for r in rows]
    return envelope(data, total, q.start, q.sort, q.order)


# ------------------------------------------------------------------ representations

def instance_view(proc: Any, activity: str | None, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    ended = proc.status not in RUNTIME
    view = {
        "id": str(proc.pk),
        "url": f"{base()}/runtime/process-instances/{proc.pk}",
        "businessKey": proc.business_key,
        "suspended": bool(proc.suspended),
        "ended": ended,
        "completed": proc.status == "success",
        "processDefinitionId": None,
        "processDefinitionUrl": None,
        "activityId": None if ended else activity,
        "tenantId": proc.tenant_id,
    }
    definition = _definition_of(proc)
    if definition is not None:
        view["processDefinitionId"] = definition
        view["processDefinitionUrl"] = f"{base()}/repository/process-definitions/{quote(definition, safe='')}"
    if variables is not None:
        types = json.loads(proc.variable_types) if proc.variable_types else {}
        view["variables"] = [variable_view(n, t, v) for n, t, v in typed_variables(variables, types)]
    return view


def _definition_of(proc: Any) -> str | None:
    # Deployments never change: their definition ids are remembered.
    cache = current_app.extensions.setdefault("orchestrator.definitions", {})
    if proc.deployment_id not in cache:
        try:
            cache[proc.deployment_id] = definition_id(service().get_definition(proc.deployment_id))
        except NotFound:
            return None
    return cache[proc.deployment_id]


def variable_view(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value, "scope": "local"}


def definition_view(dep: Any) -> dict[str, Any]:
    def_id = definition_id(dep)
    url = f"{base()}/repository/process-definitions/{quote(def_id, safe='')}"
    return {"id": def_id, "url": url, "key": dep.key, "version": dep.version, "name": dep.name,
            "description": None, "deploymentId": dep.deployment_id,
            "deploymentUrl": f"{base()}/repository/deployments/{dep.deployment_id}",
            "resource": f"{url}/resourcedata", "diagramResource": None, "category": None,
            "graphicalNotationDefined": False, "suspended": False, "startFormDefined": False,
            "tenantId": None}


def deployment_view(dep: Any) -> dict[str, Any]:
    created = dep.created_at.replace(tzinfo=None)  # stored as UTC
    return {"id": dep.deployment_id, "name": dep.name,
            "deploymentTime": created.isoformat(timespec="milliseconds") + "Z",
            "category": None, "url": f"{base()}/repository/deployments/{dep.deployment_id}", "tenantId": None}
