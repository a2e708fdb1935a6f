"""Schemathesis against the live app: whatever it sends, no 500, and every answer is what
``/swagger.json`` says (a documented status, a body matching its model, the declared content type).

The app is the real one over a real database and a real Redis, with ``noop_chain`` deployed and a
few processes started, so generated requests can succeed as well as fail. Bearer tokens are on, so
the 401s are checked too: a request without a valid token must be refused whatever else it holds.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from openapi_spec_validator.validation import OpenAPIV2SpecValidator  # comes with moto[server]
from schemathesis import checks

from api import create_app
from api.body import MAX_DEPTH, PUBLIC_ID_PATTERN
from api.schemas import MODELS
from orchestrator.config import Settings
from orchestrator.service import Service
from orchestrator.store import Store
from tests.conftest import example

# The operations of the first seed's modules; the other modules' operations are theirs to test.
OWN_PATHS = r"^/(process|task|model|health)(/|$)"
TOKEN = "openapi-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    # Methods a path does not list answer 405 with an ``Allow`` header naming the ones it does.
    checks.unsupported_method,
    checks.allow_header_conformance,
    # Without a token, or with a wrong one, every operation that declares security answers 401.
    checks.missing_required_header,
    checks.ignored_auth,
]
CONFIG = {
    "seed": 20240601,  # with ``deterministic``: the same requests on every run
    "generation": {"mode": "all", "max-examples": 30, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
}


def _spec() -> dict[str, Any]:
    """The app's ``/swagger.json``, for collection: rendering it touches neither database nor broker."""
    settings = Settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0")
    docs_only = create_app({"TESTING": True, "SETTINGS": settings}, service=Service(Store("sqlite://"), None, settings))
    return docs_only.test_client().get("/swagger.json").json


class LiveApp:
    """The WSGI app the schema sends to: each test plugs in its own, over its own database.

    (Collection needs the schema before any fixture exists; Schemathesis's lazy ``from_fixture``
    would avoid this but does not work with pytest 9.2.)"""

    app: Flask | None = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        assert self.app is not None, "no app plugged in"
        return self.app(environ, start_response)


LIVE = LiveApp()
SPEC = _spec()
schema = schemathesis.openapi.from_dict(SPEC, config=schemathesis.Config.from_dict(CONFIG)).include(
    path_regex=OWN_PATHS)
schema.app = LIVE  # probes that checks send themselves (without auth, ...) go there too


@pytest.fixture
def app(service: Service, settings: Settings, redis_client: Any) -> Iterator[Flask]:
    """The real app over this test's database and Redis, with a model deployed and processes 1-3 started."""
    secured = dataclasses.replace(settings, api_tokens=TOKEN)
    app = create_app({"TESTING": True, "SETTINGS": secured}, service=service)
    client = app.test_client()
    r = client.post("/model", data={"file": (io.BytesIO(example("noop_chain.bpmn")), "noop_chain.bpmn"),
                                    "key": "noop_chain"}, content_type="multipart/form-data", headers=AUTH)
    assert r.status_code == 201, r.json
    # Small ids are the ones generated most, so reads and operations find rows (tasks 1-3 too).
    for name in ("a", "b", "c"):
        r = client.post("/process", json={"key": "noop_chain", "processName": name, "variables": {}, "debug": True},
                        headers=AUTH)
        assert r.status_code == 200, r.json
    LIVE.app = app
    yield app
    LIVE.app = None


@schema.parametrize()
# One database per operation, shared by its examples: what some create, later ones find.
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_answer_is_documented_and_never_a_server_error(case: schemathesis.Case, app: Flask) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


# ------------------------------------------------------------------ the document itself

# Every JSON error each operation can give; all but /health need a token when tokens are configured.
ERRORS = {
    ("post", "/process"): {400, 401, 404, 409, 413, 415},  # 409: an Idempotency-Key reused with another body
    ("get", "/process/{processInstanceId}"): {401, 404},
    ("put", "/process/{processInstanceId}/{operate}"): {400, 401, 404, 409},
    ("get", "/task"): {400, 401, 404},
    ("get", "/task/{taskId}"): {401, 404},
    ("get", "/task/{taskId}/history"): {401, 404},
    ("put", "/task/{taskId}/{operate}"): {400, 401, 404, 409},
    ("post", "/model"): {400, 401, 413, 415},
    ("get", "/model"): {401},
    ("get", "/model/{modelId}"): {401, 404},
    ("get", "/health"): set(),
}


def test_the_document_is_valid_swagger_2() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OpenAPIV2SpecValidator(SPEC).iter_errors()]
    assert not errors


def test_every_operation_documents_its_errors_with_the_error_model() -> None:
    own = {(m, p) for p, item in SPEC["paths"].items() if re.match(OWN_PATHS, p) for m in item if m != "parameters"}
    assert own == set(ERRORS)
    for (method, path), statuses in ERRORS.items():
        responses = SPEC["paths"][path][method]["responses"]
        errors = {int(s) for s in responses if int(s) >= 400}
        assert errors == statuses, (method, path)
        for status in statuses:
            assert responses[str(status)]["schema"] == {"$ref": "#/definitions/Error"}, (method, path, status)
        assert all("schema" in r for s, r in responses.items() if int(s) < 300), (method, path)


def test_the_models_in_the_document_are_these_modules_own() -> None:
    """Definitions are one namespace: a same-named model of another module would replace ours."""
    for model in MODELS.values():
        assert SPEC["definitions"][model.name] == json.loads(json.dumps(model.__schema__)), model.name


def test_limits_and_id_shapes_are_documented() -> None:
    start = SPEC["paths"]["/process"]["post"]
    assert f"at most {MAX_DEPTH} levels" in start["parameters"][0]["description"]
    assert "ORCH_MAX_BODY_BYTES" in start["responses"]["413"]["description"]
    assert "ORCH_MAX_BODY_BYTES" in SPEC["paths"]["/model"]["post"]["responses"]["413"]["description"]
    for path, name in (("/process/{processInstanceId}", "processInstanceId"), ("/task/{taskId}", "taskId")):
        (param,) = [p for p in SPEC["paths"][path]["parameters"] if p["name"] == name]
        assert param["in"] == "path" and param["type"] == "string" and param["pattern"] == PUBLIC_ID_PATTERN
    (query,) = SPEC["paths"]["/task"]["get"]["parameters"]
    assert query["in"] == "query" and query["required"] and query["pattern"] == PUBLIC_ID_PATTERN
