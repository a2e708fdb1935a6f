"""``query/``: the second seed's process-instance query, filters in the body plus variable filters."""

from __future__ import annotations

from typing import Any

from flask_restx import Resource

from api.activiti import (
    INSTANCE_PAGE,
    QUERY,
    Params,
    list_instances,
    namespace,
)
from api.body import MAX_DEPTH, json_object
from api.schemas import error_responses
from orchestrator.errors import InvalidInput
from orchestrator.variables import VariableFilter

PATH = "/query"
ns = namespace("query", "Activiti-style process-instance queries (second seed)")


@ns.route("/process-instances")
@ns.doc(security="bearer")
class ProcessInstanceQuery(Resource):
    @ns.expect((QUERY, "The filters of GET runtime/process-instances, as JSON values (strings, booleans, integers; "
                       "null is absent), plus filters on the variables. The whole body nests at most "
                       f"{MAX_DEPTH} levels of objects and arrays, the body itself being one."))
    @ns.response(200, "a page of running process instances", INSTANCE_PAGE)
    @error_responses(ns, {400: "a filter, variable filter, sort field or paging value that is not valid (of the "
                               "wrong type, too long, out of range), malformed JSON, a body that is not an object, "
                               "NUL characters, lone surrogates, non-finite numbers or nesting deeper than the limit",
                          401: None, 413: None, 415: "not application/json (UTF-8)"})
    def post(self) -> Any:
        """Query running process instances: the list's filters, plus filters on their variables."""
        body = json_object()
        filters = body.get("variables")
        if filters is None:
            filters = []
        if not isinstance(filters, list):
            raise InvalidInput("variables must be a list of {name, value, operation, type}")
        return list_instances(Params(body, typed=True), [VariableFilter.parse(item) for item in filters])
