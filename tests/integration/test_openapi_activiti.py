"""Schemathesis against the Activiti-style face (runtime, query, repository), as ``test_openapi.py`` does
for the first seed's: whatever it sends, no 500, and every answer is what ``/swagger.json`` says.

The app is the real one over a real database and Redis with bearer tokens on. Seeded so that requests can
succeed: ``noop_chain`` deployed under the deployment id the document uses as its example, processes 1-3
started through the runtime API (business keys, tenants, typed variables; 3 suspended), and a model with a
user task and a call activity whose process 4 has made sub-process 5.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from api import create_app
from api.activiti import (
    DEFINITION_EXAMPLE,
    MAX_DEFINITION_ID,
    MAX_INT,
    MAX_PAGE_SIZE,
    MODELS,
    UUID_EXAMPLE,
)
from api.body import MAX_DEPTH, PUBLIC_ID_PATTERN, UUID_PATTERN
from orchestrator.service import Service
from orchestrator.store import PROCESS_SORTS
from orchestrator.variables import OPERATIONS, QUERY_TYPES, TYPES
from tests.conftest import example
from tests.integration.test_activiti import CALL, finish
from tests.integration.test_openapi import AUTH, CHECKS, CONFIG, SPEC, TOKEN, LiveApp

ACTIVITI_PATHS = r"^/(runtime|query|repository)(/|$)"
ACTIVITI_CONFIG = {**CONFIG, "generation": {**CONFIG["generation"], "max-examples": 25}}

LIVE = LiveApp()
schema = schemathesis.openapi.from_dict(SPEC, config=schemathesis.Config.from_dict(ACTIVITI_CONFIG)).include(
    path_regex=ACTIVITI_PATHS)
schema.app = LIVE


def _deploy_as(service: Service, deployment_id: str, xml: bytes, key: str | None = None) -> Any:
    """Deploy with a chosen deployment id (the service mints a uuid4 first thing): the document's example."""
    minted = iter([uuid.UUID(deployment_id)])
    real = uuid.uuid4
    with pytest.MonkeyPatch.context() as m:
        m.setattr(uuid, "uuid4", lambda: next(minted, None) or real())
        dep = service.deploy(xml, key=key)
    assert dep.deployment_id == deployment_id
    return dep


@pytest.fixture
def app(service: Service, settings: Any, redis_client: Any) -> Iterator[Flask]:
    secured = dataclasses.replace(settings, api_tokens=TOKEN)
    app = create_app({"TESTING": True, "SETTINGS": secured}, service=service)
    client = app.test_client()
    _deploy_as(service, UUID_EXAMPLE, example("noop_chain.bpmn"))
    starts = [
        {"processDefinitionKey": "noop_chain", "businessKey": "order-1", "tenantId": "acme",
         "variables": [{"name": "size", "type": "integer", "value": 3}, {"name": "zone", "value": "eu-west"},
                       {"name": "when", "type": "date", "value": "2026-01-02T00:00:00Z"}]},
        {"processDefinitionId": DEFINITION_EXAMPLE, "businessKey": "order-2",
         "variables": [{"name": "n", "type": "long", "value": 5}, {"name": "on", "value": True}]},
        {"processDefinitionKey": "noop_chain", "tenantId": "acme-eu",
         "variables": [{"name": "ratio", "type": "double", "value": 0.5}, {"name": "tags", "value": ["a"]}]},
    ]
    for body in starts:
        r = client.post("/runtime/process-instances", json=body, headers=AUTH)
        assert r.status_code == 201, r.json
    assert client.put("/runtime/process-instances/3", json={"action": "suspend"}, headers=AUTH).status_code == 200
    service.deploy(CALL.encode(), key="outer")
    r = client.post("/runtime/process-instances", json={"processDefinitionKey": "outer"}, headers=AUTH)
    assert r.status_code == 201 and r.json["id"] == "4", r.json
    finish(service, "4")  # its first task done: the call activity makes sub-process 5
    assert service.get_process("5").process_type == "sub"
    LIVE.app = app
    yield app
    LIVE.app = None


@schema.parametrize()
# One database per operation, shared by its examples: what some create, later ones find.
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_answer_is_documented_and_never_a_server_error(case: schemathesis.Case, app: Flask) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_the_seeded_examples_succeed(app: Flask) -> None:
    """The document's examples name real things here: the generated requests above can succeed."""
    client = app.test_client()
    definition = quote(DEFINITION_EXAMPLE, safe="")
    for path in ("/runtime/process-instances/1", "/runtime/process-instances/1/variables",
                 "/runtime/process-instances/1/variables/size", f"/repository/deployments/{UUID_EXAMPLE}",
                 f"/repository/process-definitions/{definition}",
                 f"/repository/process-definitions/{definition}/resourcedata"):
        assert client.get(path, headers=AUTH).status_code == 200, path
    page = client.get("/runtime/process-instances?includeProcessVariables=true", headers=AUTH).json
    assert [p["id"] for p in page["data"]] == ["1", "2", "3", "4", "5"]
    assert page["data"][0]["variables"] == [
        {"name": "size", "type": "integer", "value": 3, "scope": "local"},
        {"name": "when", "type": "date", "value": "2026-01-02T00:00:00Z", "scope": "local"},
        {"name": "zone", "type": "string", "value": "eu-west", "scope": "local"}]


# ------------------------------------------------------------------ the document itself

ERRORS = {
    ("get", "/runtime/process-instances"): {400, 401},
    ("post", "/runtime/process-instances"): {400, 401, 409, 413, 415},
    ("get", "/runtime/process-instances/{processInstanceId}"): {401, 404},
    ("put", "/runtime/process-instances/{processInstanceId}"): {400, 401, 404, 409, 413, 415},
    ("delete", "/runtime/process-instances/{processInstanceId}"): {401, 404, 409},
    ("get", "/runtime/process-instances/{processInstanceId}/variables"): {401, 404},
    ("post", "/runtime/process-instances/{processInstanceId}/variables"): {400, 401, 404, 409, 413, 415},
    ("put", "/runtime/process-instances/{processInstanceId}/variables"): {400, 401, 404, 409, 413, 415},
    ("get", "/runtime/process-instances/{processInstanceId}/variables/{variableName}"): {401, 404},
    ("put", "/runtime/process-instances/{processInstanceId}/variables/{variableName}"):
        {400, 401, 404, 409, 413, 415},
    ("post", "/runtime/ext/assigncheck"): {400, 401, 404, 413, 415},
    ("post", "/query/process-instances"): {400, 401, 413, 415},
    ("get", "/repository/deployments"): {400, 401},
    ("post", "/repository/deployments"): {400, 401, 413, 415},
    ("get", "/repository/deployments/{deploymentId}"): {401, 404},
    ("delete", "/repository/deployments/{deploymentId}"): {401, 404, 409},
    ("get", "/repository/process-definitions"): {400, 401},
    ("get", "/repository/process-definitions/{processDefinitionId}"): {401, 404},
    ("get", "/repository/process-definitions/{processDefinitionId}/resourcedata"): {401, 404},
}
# Successes without a JSON body: 204s, and the BPMN document (XML).
NO_SCHEMA = {("delete", "/runtime/process-instances/{processInstanceId}"),
             ("delete", "/repository/deployments/{deploymentId}"),
             ("get", "/repository/process-definitions/{processDefinitionId}/resourcedata")}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        if re.match(ACTIVITI_PATHS, path):
            for method, operation in item.items():
                if method != "parameters":
                    yield method, path, operation


def test_every_operation_documents_its_answers_and_needs_a_token() -> None:
    assert {(m, p) for m, p, _ in _operations()} == set(ERRORS)
    for method, path, operation in _operations():
        responses = operation["responses"]
        errors = {int(s) for s in responses if int(s) >= 400}
        assert errors == ERRORS[(method, path)], (method, path)
        for status in errors:
            assert responses[str(status)]["schema"] == {"$ref": "#/definitions/Error"}, (method, path, status)
        successes = {s: r for s, r in responses.items() if int(s) < 300}
        assert successes, (method, path)
        if (method, path) not in NO_SCHEMA:
            assert all("schema" in r for r in successes.values()), (method, path)
        assert operation["security"] == [{"bearer": []}], (method, path)


def test_the_models_in_the_document_are_these_modules_own() -> None:
    for model in MODELS:
        assert SPEC["definitions"][model.name] == json.loads(json.dumps(model.__schema__)), model.name


def _params(method: str, path: str) -> dict[str, dict[str, Any]]:
    item = SPEC["paths"][path]
    return {p["name"]: p for p in item.get("parameters", []) + item[method].get("parameters", [])}


def test_ids_enums_limits_and_bodies_are_documented() -> None:
    for path in ("/runtime/process-instances/{processInstanceId}",
                 "/runtime/process-instances/{processInstanceId}/variables"):
        param = _params("get", path)["processInstanceId"]
        assert param["in"] == "path" and param["pattern"] == PUBLIC_ID_PATTERN
    assert _params("get", "/repository/deployments/{deploymentId}")["deploymentId"]["pattern"] == UUID_PATTERN
    listing = _params("get", "/runtime/process-instances")
    assert listing["sort"]["enum"] == list(PROCESS_SORTS) and listing["order"]["enum"] == ["asc", "desc"]
    assert listing["suspended"]["type"] == "boolean" and listing["start"]["maximum"] == MAX_INT
    assert listing["size"] == {**listing["size"], "type": "integer", "minimum": 1}
    assert "maximum" not in listing["size"] and f"clamped to {MAX_PAGE_SIZE}" in listing["size"]["description"]
    assert listing["processDefinitionId"]["maxLength"] == MAX_DEFINITION_ID
    assert SPEC["definitions"]["ProcessInstancePage"]["properties"]["size"]["maximum"] == MAX_PAGE_SIZE
    definitions = _params("get", "/repository/process-definitions")
    assert definitions["version"]["type"] == "integer" and definitions["latest"]["type"] == "boolean"
    variables = _params("post", "/runtime/process-instances/{processInstanceId}/variables")["payload"]
    assert variables["schema"] == {"type": "array", "items": {"$ref": "#/definitions/VariableInput"}}
    assert f"at most {MAX_DEPTH} levels" in variables["description"]
    assert SPEC["definitions"]["VariableInput"]["properties"]["type"]["enum"] == list(TYPES)
    assert SPEC["definitions"]["VariableFilter"]["properties"]["operation"]["enum"] == list(OPERATIONS)
    assert SPEC["definitions"]["VariableFilter"]["properties"]["type"]["enum"] == list(QUERY_TYPES)
    assert SPEC["definitions"]["ProcessInstanceAction"]["properties"]["action"]["enum"] == \
        ["suspend", "activate", "jumpToActivity"]
    query = SPEC["definitions"]["ProcessInstanceQuery"]["properties"]
    assert query["suspended"] == {**query["suspended"], "type": "boolean", "x-nullable": True}
    assert query["variables"]["items"] == {"$ref": "#/definitions/VariableFilter"}
    instance = SPEC["definitions"]["ProcessInstance"]["properties"]
    for name in ("businessKey", "tenantId", "activityId", "processDefinitionId", "processDefinitionUrl"):
        assert instance[name]["x-nullable"] is True, name
    assert "ORCH_MAX_BODY_BYTES" in SPEC["paths"]["/runtime/process-instances"]["post"]["responses"]["413"][
        "description"]
    assert "Idempotency-Key" in _params("post", "/runtime/process-instances")
    assert SPEC["paths"]["/repository/process-definitions/{processDefinitionId}/resourcedata"]["get"][
        "produces"] == ["application/xml", "application/json"]


def test_the_urls_in_the_answers_lead_to_their_resources(app: Flask, service: Service) -> None:
    """Keys and variable names may hold slashes and colons: the URLs the answers give still work."""
    client = app.test_client()
    service.deploy(example("noop_chain.bpmn"), key="team/a:b")
    r = client.post("/runtime/process-instances", headers=AUTH, json={
        "processDefinitionKey": "team/a:b", "variables": [{"name": "dir/name", "value": "x"}]})
    assert r.status_code == 201, r.json
    instance = r.json
    definition = client.get(instance["processDefinitionUrl"], headers=AUTH)
    assert definition.status_code == 200 and definition.json["key"] == "team/a:b"
    for url in (instance["url"], definition.json["deploymentUrl"], definition.json["resource"],
                f"{instance['url']}/variables/{quote('dir/name', safe='')}"):
        assert client.get(url, headers=AUTH).status_code == 200, url
    assert client.get(f"{instance['url']}/variables/dir/name", headers=AUTH).json["value"] == "x"


def test_an_action_that_ends_the_process_answers_ended_not_404(app: Flask, service: Service) -> None:
    """``ended`` / ``completed`` are documented as true in the answer to an action that ended the process."""
    client = app.test_client()
    url = "/runtime/process-instances/2"
    jumped = client.put(url, json={"action": "jumpToActivity", "activityId": "t5"}, headers=AUTH)
    assert jumped.status_code == 200 and jumped.json["activityId"] == "t5", jumped.json
    assert client.put(url, json={"action": "suspend"}, headers=AUTH).json["suspended"] is True
    finish(service, "2")  # the last task is done while suspended: activating ends the process
    r = client.put(url, json={"action": "activate"}, headers=AUTH)
    assert r.status_code == 200, r.json
    assert (r.json["ended"], r.json["completed"], r.json["activityId"]) == (True, True, None)
    assert client.get(url, headers=AUTH).status_code == 404  # the runtime API forgets finished processes
