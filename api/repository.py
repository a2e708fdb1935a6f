"""``repository/``: deployments and process definitions, Activiti style, over the same models as ``/model``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from flask_restx import Resource

from api.activiti import (
    DEFINITION,
    DEFINITION_EXAMPLE,
    DEFINITION_FILTERS,
    DEFINITION_ID_PATTERN,
    DEFINITION_PAGE,
    DEFINITION_SORTS,
    DEPLOYMENT,
    DEPLOYMENT_FIELDS,
    DEPLOYMENT_FILTERS,
    DEPLOYMENT_PAGE,
    MAX_INT,
    UUID_EXAMPLE,
    definition_view,
    deployment_view,
    envelope,
    namespace,
    paging,
    query_params,
    query_string,
    resolve_definition,
    service,
)
from api.body import UUID_PATTERN, uuid_id
from api.model import TOO_LARGE, deploy_upload
from api.schemas import MAX_NAME, error_responses
from orchestrator.errors import InvalidInput, NotFound, UnsupportedMediaType

PATH = "/repository"
ns = namespace("repository", "Activiti-style deployments and process definitions")
DEPLOYMENT_ID = {"description": "the deployment id, a uuid (anything else is 404)", "pattern": UUID_PATTERN,
                 "x-example": UUID_EXAMPLE}
DEFINITION_ID = {"description": "key:version:deploymentId (or a bare deploymentId); anything else is 404",
                 "pattern": DEFINITION_ID_PATTERN, "x-example": DEFINITION_EXAMPLE}
UPLOAD_PARAMS = {
    "file": {"in": "formData", "type": "file", "required": True,
             "description": "the BPMN 2.0 document, UTF-8, without DOCTYPE or entity declarations (the one file "
                            "part, whatever its name)"},
    "key": {"in": "formData", "type": "string", "maxLength": MAX_NAME,
            "description": "the model's key (empty or absent: the BPMN process id); the same key again makes a new "
                           "version"},
    "name": {"in": "formData", "type": "string", "maxLength": MAX_NAME,
             "description": "the model's name (empty or absent: the BPMN process name)"},
}


def _page(items: list[Any], paged: tuple[int, int, str, str], sorts: dict[str, str | None],
          view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """One page of ``items`` (sorted here: a repository holds few deployments) in the list envelope."""
    start, size, sort, order = paged
    key = sorts[sort]
    if key is not None:
        items = sorted(items, key=lambda d: (getattr(d, key) is None, getattr(d, key) or 0),
                       reverse=order == "desc")
    return envelope([view(d) for d in items[start:start + size]], len(items), start, sort, order)


@ns.route("/deployments")
@ns.doc(security="bearer")
class Deployments(Resource):
    @ns.doc(params=query_params(DEPLOYMENT_FILTERS))
    @ns.response(200, "a page of deployments", DEPLOYMENT_PAGE)
    @error_responses(ns, {400: "a filter, sort field or paging value that is not valid (too long, NUL characters, "
                               "out of range)", 401: None})
    def get(self) -> Any:
        """List deployments (every version of every model)."""
        params = query_string()
        name, name_like = params.text("name"), params.like("nameLike")
        paged = paging(params, DEPLOYMENT_FIELDS, "id")  # all refused before the database is asked
        deps = service().list_definitions(name=name, name_like=name_like)
        return _page(deps, paged, DEPLOYMENT_FIELDS, deployment_view)

    @ns.doc(params=UPLOAD_PARAMS, consumes=["multipart/form-data"])
    @ns.response(201, "deployed: the new deployment (or the latest one, when the same document is uploaded again)",
                 DEPLOYMENT)
    @error_responses(ns, {400: "not exactly one file part, BPMN that is not UTF-8, does not parse or validate (the "
                               "parser's message), has a DOCTYPE or entities, or a bad key or name",
                          401: None, 413: TOO_LARGE, 415: "not multipart/form-data"})
    def post(self) -> Any:
        """Deploy a BPMN file (multipart/form-data: one file part, optional form fields key and name)."""
        if request.mimetype != "multipart/form-data":
            raise UnsupportedMediaType("upload the BPMN file as multipart/form-data")
        uploads = list(request.files.items(multi=True))  # over the limits: 413 from werkzeug's form parser
        if len(uploads) != 1:
            raise InvalidInput("send exactly one file part: the BPMN document")
        upload = uploads[0][1]
        dep = deploy_upload(upload.read(), request.form.get("key") or None, request.form.get("name"),
                            upload.filename)
        return deployment_view(dep), 201


@ns.route("/deployments/<string:deploymentId>")
@ns.param("deploymentId", **DEPLOYMENT_ID)
@ns.doc(security="bearer")
class DeploymentItem(Resource):
    @ns.response(200, "the deployment", DEPLOYMENT)
    @error_responses(ns, {401: None, 404: "no such deployment"})
    def get(self, deploymentId: str) -> Any:
        """One deployment."""
        return deployment_view(service().get_definition(uuid_id(deploymentId, "deployment")))

    @ns.response(204, "deleted, with what was recorded of its finished processes")
    @error_responses(ns, {401: None, 404: "no such deployment", 409: "a process of this deployment is not over"})
    def delete(self, deploymentId: str) -> Any:
        """Delete a deployment no running process uses."""
        service().delete_deployment(uuid_id(deploymentId, "deployment"))
        return current_app.response_class(status=204, mimetype="application/json")  # the produced type, no body


@ns.route("/process-definitions")
@ns.doc(security="bearer")
class Definitions(Resource):
    @ns.doc(params=query_params(DEFINITION_FILTERS))
    @ns.response(200, "a page of process definitions", DEFINITION_PAGE)
    @error_responses(ns, {400: "a filter, sort field or paging value that is not valid (of the wrong type, too "
                               "long, NUL characters, out of range)", 401: None})
    def get(self) -> Any:
        """List process definitions."""
        params = query_string()
        key, key_like = params.text("key"), params.like("keyLike")
        name, name_like = params.text("name"), params.like("nameLike")
        version = params.number("version", None, 1, MAX_INT)
        latest = bool(params.flag("latest"))
        deployment_id = params.text("deploymentId", 36)
        paged = paging(params, DEFINITION_SORTS, "key")  # all refused before the database is asked
        defs = service().list_definitions(key=key, key_like=key_like, version=version, latest=latest,
                                          name=name, name_like=name_like, deployment_id=deployment_id)
        return _page(defs, paged, DEFINITION_SORTS, definition_view)


def _definition(processDefinitionId: str, with_documents: bool = False) -> Any:
    dep = resolve_definition(processDefinitionId, with_documents=with_documents)
    if dep is None:
        raise NotFound(f"process definition {processDefinitionId!r} not found"[:300])
    return dep


# ``path``: a key may hold a slash, which the definition's URL encodes as %2F and the server decodes.
@ns.route("/process-definitions/<path:processDefinitionId>")
@ns.param("processDefinitionId", **DEFINITION_ID)
@ns.doc(security="bearer")
class Definition(Resource):
    @ns.response(200, "the process definition", DEFINITION)
    @error_responses(ns, {401: None, 404: "no such process definition"})
    def get(self, processDefinitionId: str) -> Any:
        """One process definition."""
        return definition_view(_definition(processDefinitionId))


@ns.route("/process-definitions/<path:processDefinitionId>/resourcedata")
@ns.param("processDefinitionId", **DEFINITION_ID)
@ns.doc(security="bearer")
class DefinitionResource(Resource):
    @ns.produces(["application/xml", "application/json"])
    @ns.response(200, "the BPMN document, application/xml")
    @error_responses(ns, {401: None, 404: "no such process definition"})
    def get(self, processDefinitionId: str) -> Any:
        """The process definition's BPMN document (errors are JSON)."""
        return Response(_definition(processDefinitionId, with_documents=True).bpmn_xml, mimetype="application/xml")
