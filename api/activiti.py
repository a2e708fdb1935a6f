"""Shared pieces of the Activiti-style face (second seed): representations, paging, filters."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from flask import current_app, request
from flask_restx import Model, Namespace, fields

from api.body import check_json
from orchestrator.errors import InvalidInput, NotFound, UnsupportedMediaType
from orchestrator.service import Service, definition_id
from orchestrator.store import PROCESS_SORTS, ProcessQuery
from orchestrator.variables import infer_type

# A page holds at most this many items; a larger ``size`` is clamped to it (documented).
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 10
DEPLOYMENT_FIELDS = {"id": "deployment_id", "name": "name", "deployTime": "created_at", "tenantId": None}
DEFINITION_SORTS = {"id": "deployment_id", "key": "key", "name": "name", "version": "version",
                    "deploymentId": "deployment_id"}


ERROR = Model("ActivitiError", {"code": fields.String(required=True), "message": fields.String(required=True)})


def namespace(name: str, description: str) -> Namespace:
    """A namespace of this face, with the shared error model registered."""
    ns = Namespace(name, description=description)
    ns.add_model(ERROR.name, ERROR)
    return ns


def service() -> Service:
    return current_app.extensions["orchestrator"]


def base() -> str:
    return request.host_url.rstrip("/")


def json_value() -> Any:
    """The request's JSON body, whatever its shape (lists are valid bodies here)."""
    if request.mimetype != "application/json" and not (request.mimetype or "").endswith("+json"):
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {request.mimetype or 'none'!r}")
    try:
        value = json.loads(request.get_data(cache=True).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from exc
    check_json(value)
    return value


def json_body_object() -> dict[str, Any]:
    body = json_value()
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return body


def instance_view(proc, activity: str | None, variables: dict[str, Any] | None = None,
                  types: dict[str, str] | None = None) -> dict[str, Any]:
    view = {
        "id": str(proc.pk),
        "url": f"{base()}/runtime/process-instances/{proc.pk}",
        "businessKey": proc.business_key,
        "suspended": bool(proc.suspended),
        "ended": False,
        "completed": False,
        "processDefinitionId": None,
        "processDefinitionUrl": None,
        "activityId": activity,
        "tenantId": proc.tenant_id,
    }
    definition = _definition_of(proc)
    if definition is not None:
        view["processDefinitionId"] = definition
        view["processDefinitionUrl"] = f"{base()}/repository/process-definitions/{quote(definition, safe='')}"
    if variables is not None:
        view["variables"] = [variable_view(n, (types or {}).get(n), v) for n, v in sorted(variables.items())]
    return view


def _definition_of(proc) -> str | None:
    # Deployments never change: their definition ids are remembered.
    cache = current_app.extensions.setdefault("orchestrator.definitions", {})
    if proc.deployment_id not in cache:
        try:
            cache[proc.deployment_id] = definition_id(service().get_definition(proc.deployment_id))
        except NotFound:
            return None
    return cache[proc.deployment_id]


def variable_view(name: str, kind: str | None, value: Any) -> dict[str, Any]:
    return {"name": name, "type": kind or infer_type(value), "value": value, "scope": "local"}


def definition_view(dep) -> dict[str, Any]:
    def_id = definition_id(dep)
    url = f"{base()}/repository/process-definitions/{quote(def_id, safe='')}"
    return {"id": def_id, "url": url, "key": dep.key, "version": dep.version, "name": dep.name,
            "description": None, "deploymentId": dep.deployment_id,
            "deploymentUrl": f"{base()}/repository/deployments/{dep.deployment_id}",
            "resource": f"{url}/resourcedata", "diagramResource": None, "category": None,
            "graphicalNotationDefined": False, "suspended": False, "startFormDefined": False,
            "tenantId": None}


def deployment_view(dep) -> dict[str, Any]:
    return {"id": dep.deployment_id, "name": dep.name,
            "deploymentTime": dep.created_at.isoformat(timespec="milliseconds") + "Z",
            "category": None, "url": f"{base()}/repository/deployments/{dep.deployment_id}", "tenantId": None}


def parse_bool(name: str, raw: Any) -> bool | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise InvalidInput(f"{name} must be true or false, got {raw!r}")


def parse_int(name: str, raw: Any, default: int, minimum: int = 0) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise InvalidInput(f"{name} must be an integer")
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum}")
    return value


def paging(params: dict[str, Any], sorts: dict[str, Any], default_sort: str) -> tuple[int, int, str, str]:
    """``start``, ``size`` (clamped to ``MAX_PAGE_SIZE``), ``sort`` (one of ``sorts``), ``order``."""
    start = parse_int("start", params.get("start"), 0)
    size = min(parse_int("size", params.get("size"), DEFAULT_PAGE_SIZE, minimum=1), MAX_PAGE_SIZE)
    sort = params.get("sort") or default_sort
    if sort not in sorts:
        raise InvalidInput(f"cannot sort by {sort!r}: use one of {', '.join(sorts)}")
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise InvalidInput(f"order must be asc or desc, got {order!r}")
    return start, size, sort, order


def envelope(data: list[Any], total: int, start: int, sort: str, order: str) -> dict[str, Any]:
    return {"data": data, "total": total, "start": start, "sort": sort, "order": order, "size": len(data)}


def _optional_str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    return value


def _optional_id(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        return -1  # no process has such an id: the filter matches nothing
    return int(text)


def process_query(params: dict[str, Any]) -> tuple[ProcessQuery, str | None, bool]:
    """The second seed's list filters (query string or query body) into a ``ProcessQuery``."""
    start, size, sort, order = paging(params, PROCESS_SORTS, "id")
    definition = _optional_str(params, "processDefinitionId")
    q = ProcessQuery(
        id=_optional_id(params, "id"),
        deployment_ids=[definition.rsplit(":", 1)[-1]] if definition else None,
        definition_key=_optional_str(params, "processDefinitionKey"),
        business_key=_optional_str(params, "businessKey"),
        suspended=parse_bool("suspended", params.get("suspended")),
        super_pk=_optional_id(params, "superProcessInstanceId"),
        sub_pk=_optional_id(params, "subProcessInstanceId"),
        exclude_subprocesses=bool(parse_bool("excludeSubprocesses", params.get("excludeSubprocesses"))),
        tenant_id=_optional_str(params, "tenantId"),
        tenant_id_like=_optional_str(params, "tenantIdLike"),
        without_tenant_id=bool(parse_bool("withoutTenantId", params.get("withoutTenantId"))),
        sort=sort, order=order, start=start, size=size)
    include = bool(parse_bool("includeProcessVariables", params.get("includeProcessVariables")))
    return q, _optional_str(params, "involvedUser"), include


QUERY_PARAMS = {
    "id": "only the process instance with this id",
    "processDefinitionKey": "only instances of this process definition key",
    "processDefinitionId": "only instances of this process definition id",
    "businessKey": "only instances with this business key",
    "involvedUser": "only instances whose model's user tasks involve this user",
    "suspended": "true: only suspended instances; false: only active ones",
    "superProcessInstanceId": "only the sub-processes (call activities) of this instance",
    "subProcessInstanceId": "only the instance that has this sub-process",
    "excludeSubprocesses": "true: no sub-processes",
    "includeProcessVariables": "true: the variables are in the answer",
    "tenantId": "only instances of this tenant",
    "tenantIdLike": "only instances whose tenant matches this LIKE pattern (% and _)",
    "withoutTenantId": "true: only instances without a tenant",
    "sort": f"sort field: {', '.join(PROCESS_SORTS)} (default id)",
    "order": "asc (default) or desc",
    "start": "index of the first result (default 0)",
    "size": f"page size (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}: larger sizes are clamped)",
}
