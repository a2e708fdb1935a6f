"""``query/``: the second seed's process-instance query, filters in the body plus variable filters."""

from __future__ import annotations

from flask_restx import Resource, fields

from api.activiti import (
    ERROR,
    QUERY_PARAMS,
    envelope,
    instance_view,
    json_body_object,
    namespace,
    process_query,
    service,
)
from api.runtime import PAGE
from orchestrator.errors import InvalidInput
from orchestrator.variables import OPERATIONS, QUERY_TYPES, VariableFilter

PATH = "/query"
ns = namespace("query", "Activiti-style process-instance queries (second seed)")
ns.add_model(PAGE.name, PAGE)  # defined with the runtime API: one page model for both

VARIABLE_FILTER = ns.model("VariableFilter", {
    "name": fields.String(required=True),
    "value": fields.Raw(required=True),
    "operation": fields.String(description=", ".join(OPERATIONS) + " (default equals)"),
    "type": fields.String(description=", ".join(QUERY_TYPES) + " (default: the value's)"),
})
QUERY = ns.model("ProcessInstanceQuery", {
    **{name: fields.String(description=text) for name, text in QUERY_PARAMS.items()},
    "variables": fields.List(fields.Nested(VARIABLE_FILTER), description="every filter must hold"),
})


@ns.route("/process-instances")
class ProcessInstanceQuery(Resource):
    @ns.expect(QUERY)
    @ns.response(200, "a page of running process instances", PAGE)
    @ns.response(400, "a filter, variable filter, sort field or paging value is not valid", ERROR)
    @ns.response(415, "not JSON", ERROR)
    def post(self):
        """Query running process instances: the list's filters, plus filters on their variables."""
        body = json_body_object()
        filters = body.pop("variables", None) or []
        if not isinstance(filters, list):
            raise InvalidInput("variables must be a list of {name, value, operation, type}")
        variable_filters = [VariableFilter.parse(item) for item in filters]
        q, user, include = process_query(body)
        rows, total, activities, variables = service().query_processes(
            q, involved_user=user, variable_filters=variable_filters, with_variables=include)
        data = [instance_view(r, activities.get(r.pk), variables.get(r.pk) if include else None) for r in rows]
        return envelope(data, total, q.start, q.sort, q.order)
