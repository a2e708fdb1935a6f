"""``/model``: upload BPMN, list and read models and their deployments."""

from __future__ import annotations

from flask import current_app, request
from flask_restx import Namespace, Resource

from api.schemas import deployment_view, model_view, register_models
from orchestrator.errors import InvalidInput, UnsupportedMediaType
from orchestrator.service import Service

PATH = "/model"
ns = Namespace("model", description="Models (BPMN) and their immutable deployments")
M = register_models(ns)
XML_TYPES = ("application/xml", "text/xml", "application/bpmn+xml")


def service() -> Service:
    return current_app.extensions["orchestrator"]


def _read_upload() -> tuple[bytes, str | None, str | None, str, str | None]:
    """BPMN as multipart (``file``, optional ``key``, ``name``, ``outputTemplate``) or a raw XML body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidInput("multipart upload needs a 'file' part with the BPMN document")
        template = request.files.get("outputTemplate")
        template_text = template.read().decode("utf-8") if template is not None else \
            request.form.get("outputTemplate")
        return (upload.read(), request.form.get("key"), request.form.get("name"), upload.filename or "model.bpmn",
                template_text)
    if request.mimetype in XML_TYPES:
        return request.get_data(), request.args.get("key"), request.args.get("name"), "model.bpmn", None
    raise UnsupportedMediaType("upload BPMN as multipart/form-data (field 'file') or as application/xml")


@ns.route("")
class ModelList(Resource):
    @ns.response(201, "deployed: the new deployment")
    @ns.response(400, "BPMN that does not parse or validate", M["error"])
    @ns.response(415, "neither multipart nor XML", M["error"])
    def post(self):
        """Upload a BPMN model; each upload of a key makes a new immutable deployment (version)."""
        xml, key, name, filename, template = _read_upload()
        if not xml.strip():
            raise InvalidInput("the BPMN document is empty")
        if key is not None and not key.strip():
            raise InvalidInput("key must not be empty")
        dep = service().deploy(xml, key=key, name=name, filename=filename, output_template_text=template)
        return deployment_view(dep), 201

    def get(self):
        """List models with their latest version."""
        return [model_view(m) for m in service().list_models()]


@ns.route("/<string:modelId>")
class ModelItem(Resource):
    @ns.response(404, "no such model", M["error"])
    def get(self, modelId: str):
        """A model and all its deployments."""
        model, deployments = service().get_model(modelId)
        return model_view(model, deployments)
