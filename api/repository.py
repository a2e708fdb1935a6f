"""``repository/``: deployments and process definitions, Activiti style, over the same models as ``/model``."""

from __future__ import annotations

from flask import Response, request
from flask_restx import Resource, fields

from api.activiti import (
    DEFINITION_SORTS,
    DEPLOYMENT_FIELDS,
    ERROR,
    definition_view,
    deployment_view,
    envelope,
    namespace,
    paging,
    parse_bool,
    parse_int,
    service,
)
from orchestrator.errors import InvalidInput, NotFound, UnsupportedMediaType

PATH = "/repository"
ns = namespace("repository", "Activiti-style deployments and process definitions")

DEPLOYMENT = ns.model("Deployment", {"id": fields.String, "name": fields.String, "deploymentTime": fields.String,
                                     "category": fields.String, "url": fields.String, "tenantId": fields.String})
DEFINITION = ns.model("ProcessDefinition", {
    "id": fields.String(description="key:version:deploymentId"), "url": fields.String, "key": fields.String,
    "version": fields.Integer, "name": fields.String, "description": fields.String,
    "deploymentId": fields.String, "deploymentUrl": fields.String, "resource": fields.String,
    "diagramResource": fields.String, "category": fields.String, "graphicalNotationDefined": fields.Boolean,
    "suspended": fields.Boolean, "startFormDefined": fields.Boolean, "tenantId": fields.String,
})
PAGE_PARAMS = {"sort": "sort field", "order": "asc or desc", "start": "first index", "size": "page size"}


def _page(items, params, sorts, default):
    start, size, sort, order = paging(params, sorts, default)
    key = sorts[sort]
    items = sorted(items, key=lambda d: (getattr(d, key) is None, getattr(d, key) or 0) if key else 0,
                   reverse=order == "desc")
    return items[start:start + size], len(items), start, sort, order


@ns.route("/deployments")
class Deployments(Resource):
    @ns.doc(params={"name": "exact name", "nameLike": "LIKE pattern", **PAGE_PARAMS})
    @ns.response(200, "a page of deployments")
    @ns.response(400, "bad sort or paging", ERROR)
    def get(self):
        """List deployments (every version of every model)."""
        params = request.args.to_dict()
        deps = service().list_definitions(name_like=params.get("nameLike"))
        if params.get("name") is not None:
            deps = [d for d in deps if d.name == params["name"]]
        page, total, start, sort, order = _page(deps, params, DEPLOYMENT_FIELDS, "id")
        return envelope([deployment_view(d) for d in page], total, start, sort, order)

    @ns.response(201, "deployed", DEPLOYMENT)
    @ns.response(400, "BPMN that does not parse or validate", ERROR)
    @ns.response(415, "not multipart/form-data", ERROR)
    def post(self):
        """Deploy a BPMN file (multipart/form-data, any part name; optional form field key)."""
        if request.mimetype != "multipart/form-data":
            raise UnsupportedMediaType("upload the BPMN file as multipart/form-data")
        if len(request.files) != 1:
            raise InvalidInput("send exactly one file: the BPMN document")
        upload = next(iter(request.files.values()))
        xml = upload.read()
        if not xml.strip():
            raise InvalidInput("the BPMN document is empty")
        dep = service().deploy(xml, key=request.form.get("key") or None, name=request.form.get("name") or None,
                               filename=upload.filename or "model.bpmn")
        return deployment_view(dep), 201


@ns.route("/deployments/<string:deploymentId>")
@ns.param("deploymentId", "the deployment id")
class DeploymentItem(Resource):
    @ns.response(200, "the deployment", DEPLOYMENT)
    @ns.response(404, "no such deployment", ERROR)
    def get(self, deploymentId: str):
        """One deployment."""
        return deployment_view(service().get_definition(deploymentId))

    @ns.response(204, "deleted, with what was recorded of its finished processes")
    @ns.response(404, "no such deployment", ERROR)
    @ns.response(409, "a process of this deployment is not over", ERROR)
    def delete(self, deploymentId: str):
        """Delete a deployment no running process uses."""
        service().delete_deployment(deploymentId)
        return "", 204


@ns.route("/process-definitions")
class Definitions(Resource):
    @ns.doc(params={"key": "exact key", "keyLike": "LIKE pattern", "name": "exact name", "nameLike": "LIKE pattern",
                    "version": "exact version", "latest": "true: only the latest version of each key",
                    "deploymentId": "of this deployment", **PAGE_PARAMS})
    @ns.response(200, "a page of process definitions")
    @ns.response(400, "bad filter, sort or paging", ERROR)
    def get(self):
        """List process definitions."""
        params = request.args.to_dict()
        version = parse_int("version", params.get("version"), 0) if params.get("version") else None
        defs = service().list_definitions(key=params.get("key"), key_like=params.get("keyLike"), version=version,
                                          latest=bool(parse_bool("latest", params.get("latest"))),
                                          name_like=params.get("nameLike"))
        if params.get("name") is not None:
            defs = [d for d in defs if d.name == params["name"]]
        if params.get("deploymentId") is not None:
            defs = [d for d in defs if d.deployment_id == params["deploymentId"]]
        page, total, start, sort, order = _page(defs, params, DEFINITION_SORTS, "key")
        return envelope([definition_view(d) for d in page], total, start, sort, order)


@ns.route("/process-definitions/<string:processDefinitionId>")
@ns.param("processDefinitionId", "key:version:deploymentId")
class Definition(Resource):
    @ns.response(200, "the process definition", DEFINITION)
    @ns.response(404, "no such process definition", ERROR)
    def get(self, processDefinitionId: str):
        """One process definition."""
        return definition_view(service().get_definition(processDefinitionId))


@ns.route("/process-definitions/<string:processDefinitionId>/resourcedata")
@ns.param("processDefinitionId", "key:version:deploymentId")
class DefinitionResource(Resource):
    @ns.produces(["application/xml"])
    @ns.response(200, "the BPMN XML")
    @ns.response(404, "no such process definition", ERROR)
    def get(self, processDefinitionId: str):
        """The process definition's BPMN document."""
        dep = service().get_definition(processDefinitionId, with_documents=True)
        if dep is None:
            raise NotFound(f"process definition {processDefinitionId!r} not found")
        return Response(dep.bpmn_xml, mimetype="application/xml")
