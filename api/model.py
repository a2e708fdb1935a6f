"""``/model``: upload BPMN, list and read models and their deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from flask_restx import Namespace, Resource

from api.body import UUID_PATTERN, check_text, uuid_id
from api.current import service
from api.schemas import (
    BEARER,
    GENERIC_REASONS,
    MAX_NAME,
    deployment_view,
    error_responses,
    model_view,
    register_models,
)
from orchestrator.errors import InvalidInput, UnsupportedMediaType

PATH = "/model"
ns = Namespace("model", description="Models (BPMN) and their immutable deployments", authorizations=BEARER)
M = register_models(ns)
XML_TYPES = ("application/xml", "text/xml", "application/bpmn+xml")


@dataclass
class Upload:
    xml: bytes
    key: str | None
    name: str | None
    filename: str
    template: str | None


def _text(value: str | None, what: str, max_length: int | None = None) -> str | None:
    if value is None:
        return None
    check_text(value)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters")
    return value


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} must be UTF-8 ({exc.reason} at byte {exc.start})") from exc


def deploy_upload(xml: bytes, key: str | None, name: str | None, filename: str | None,
                  template: str | None = None) -> Any:
    """Deploy an uploaded BPMN document (both faces upload through here). The document itself is
    checked where every document is read (``engine.read_xml``); the form fields here."""
    key = _text(key, "key", MAX_NAME)
    if key is not None and not key.strip():
        raise InvalidInput("key must not be empty (or blank)")
    return service().deploy(xml, key=key, name=_text(name, "name", MAX_NAME) or None,
                            filename=_text(filename, "the file name") or "model.bpmn",
                            output_template_text=_text(template, "outputTemplate"))


def _read_upload() -> Upload:
    """BPMN as multipart (``file``, optional ``key``, ``name``, ``outputTemplate``) or a raw XML body;
    ``key`` and ``name`` may also come as query parameters (a multipart field wins)."""
    if request.mimetype == "multipart/form-data":  # over MAX_CONTENT_LENGTH: 413 from werkzeug's form parser
        upload = request.files.get("file")
        if upload is None:
            raise InvalidInput("multipart upload needs a 'file' part with the BPMN document")
        template = request.files.get("outputTemplate")
        template_text = (_utf8(template.read(), "outputTemplate") if template is not None
                         else request.form.get("outputTemplate"))
        return Upload(upload.read(), request.form.get("key", request.args.get("key")),
                      request.form.get("name", request.args.get("name")), upload.filename or "model.bpmn",
                      template_text)
    if request.mimetype in XML_TYPES:
        return Upload(request.get_data(), request.args.get("key"), request.args.get("name"), "model.bpmn", None)
    raise UnsupportedMediaType("upload BPMN as multipart/form-data (field 'file') or as application/xml")


UPLOAD_PARAMS = {
    "file": {"in": "formData", "type": "file", "required": True,
             "description": "the BPMN 2.0 document, UTF-8, without DOCTYPE or entity declarations"},
    "key": {"in": "formData", "type": "string", "minLength": 1, "maxLength": MAX_NAME,
            "description": "the model's key (default: the BPMN process id); the same key again makes a new version"},
    "name": {"in": "formData", "type": "string", "maxLength": MAX_NAME,
             "description": "the model's name (default: the BPMN process name)"},
    "outputTemplate": {"in": "formData", "type": "string",
                       "description": "Jinja template of the process outputs (a text field or a file part)"},
}


TOO_LARGE = (f"{GENERIC_REASONS[413]}, or a multipart text field over {Flask.default_config['MAX_FORM_MEMORY_SIZE']} "
             f"bytes (send big values as file parts)")


@ns.route("")
@ns.doc(security="bearer")
class ModelList(Resource):
    @ns.doc(params=UPLOAD_PARAMS, description=(
        "Also accepted: the BPMN document as the whole body, Content-Type application/xml, text/xml or "
        "application/bpmn+xml, with key and name as query parameters. A DOCTYPE or an entity declaration is "
        "refused before any XML parser sees the document."))
    @ns.response(201, "deployed: the new deployment (or the latest one, when the same document is uploaded "
                      "again)", M["deployment"])
    @error_responses(ns, {400: "BPMN that is not UTF-8, does not parse or validate (the parser's message), has a "
                               "DOCTYPE or entities, or a bad key, name or output template",
                          401: None, 413: TOO_LARGE,
                          415: "neither multipart/form-data nor XML"})
    def post(self) -> Any:
        """Upload a BPMN model; each upload of a key makes a new immutable deployment (version)."""
        up = _read_upload()
        return deployment_view(deploy_upload(up.xml, up.key, up.name, up.filename, up.template)), 201

    @ns.response(200, "every model, with its latest version", [M["model"]])
    @error_responses(ns, {401: None})
    def get(self) -> Any:
        """List models with their latest version."""
        return [model_view(m) for m in service().list_models()]


@ns.route("/<string:modelId>")
@ns.param("modelId", "uuid of the model (anything else is 404)", pattern=UUID_PATTERN)
@ns.doc(security="bearer")
class ModelItem(Resource):
    @ns.response(200, "the model and all its deployments, oldest first", M["model_detail"])
    @error_responses(ns, {401: None, 404: "no such model"})
    def get(self, modelId: str) -> Any:
        """A model and all its deployments."""
        model, deployments = service().get_model(uuid_id(modelId, "model"))
        return model_view(model, deployments)
