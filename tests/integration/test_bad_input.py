"""Bad input over real HTTP: every refusal is the right JSON error, writes nothing and enqueues nothing.

The app runs in waitress (as ``orchestrator api`` runs it) on a free port, over a real database and
a real Redis; requests go through ``requests``. Ids of the wrong shape must be refused without a
single SQL statement, and XML with a DOCTYPE or entities before any parser is handed the document.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from lxml import etree
from sqlalchemy import event
from waitress import wasyncore
from waitress.server import create_server

import api.activiti
from api import create_app
from api.body import MAX_DEPTH
from orchestrator import engine
from orchestrator.config import Settings
from orchestrator.service import Service
from tests.conftest import example

MAX_BODY = 1024 * 1024  # the configured limit in these tests (Settings.max_body_bytes)
TABLES = ("models", "deployments", "processes", "tasks", "outbox", "task_events")
QUEUE = "stone.NoopStone"
JSON = "application/json"


class Probe:
    """What a request did besides answering: SQL statements run, rows and queued jobs."""

    def __init__(self, service: Any, redis_client: Any):
        self.service = service
        self.redis = redis_client
        self.statements = 0
        self.parses = 0
        self.baseline: dict[str, int] = {}
        event.listen(service.store.engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.statements += 1

    def close(self) -> None:
        event.remove(self.service.store.engine, "before_cursor_execute", self._count)

    def state(self) -> dict[str, int]:
        with self.service.store.read() as tx:
            rows = {t: tx.cx.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in TABLES}
        return {**rows, QUEUE: self.redis.llen(QUEUE)}


@pytest.fixture
def probe(service: Service, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    probe = Probe(service, redis_client)
    parse = engine.etree.fromstring

    def counting_parse(*args: Any, **kwargs: Any) -> Any:  # every BPMN document reaches lxml through here
        probe.parses += 1
        return parse(*args, **kwargs)

    monkeypatch.setattr(engine.etree, "fromstring", counting_parse)
    yield probe
    probe.close()


@pytest.fixture
def base_url(service: Service, settings: Settings, probe: Probe) -> Iterator[str]:
    """The app behind waitress on 127.0.0.1, with ``noop_chain`` deployed and a smaller body limit."""
    small = dataclasses.replace(settings, max_body_bytes=MAX_BODY)
    app = create_app({"TESTING": True, "SETTINGS": small}, service=service)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()

    def serve() -> None:
        # waitress's own loop, one poll at a time, so that this thread (not another one, racing its
        # ``select``) closes the sockets when the test is over.
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)
        wasyncore.close_all(server._map)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}"
    try:
        r = requests.post(f"{url}/model?key=noop_chain", data=example("noop_chain.bpmn"),
                          headers={"Content-Type": "application/xml"}, timeout=10)
        assert r.status_code == 201, r.text
        probe.parses = 0
        yield url
    finally:
        stop.set()
        thread.join(5)
        server.task_dispatcher.shutdown()


def refused(probe: Probe, response: requests.Response, status: int, message: str = "", case: Any = None) -> None:
    """A JSON ``{"code", "message"}`` error with ``status`` and a message (containing ``message``), and
    nothing written or enqueued."""
    where = f"{response.request.method} {response.request.url} {case!r}"
    assert response.status_code == status, (where, response.status_code, response.text)
    assert response.headers["Content-Type"].startswith(JSON), where
    body = response.json()
    assert set(body) == {"code", "message"} and all(isinstance(v, str) for v in body.values()), where
    assert body["message"].strip() and message in body["message"], (where, body)
    assert probe.state() == probe.baseline, where


@pytest.fixture
def http(base_url: str, probe: Probe) -> Iterator[Any]:
    """``http(method, path, **kwargs)`` against the live server; records the baseline state first."""
    probe.baseline = probe.state()
    with requests.Session() as session:
        def call(method: str, path: str, **kwargs: Any) -> requests.Response:
            return session.request(method, base_url + path, timeout=30, **kwargs)
        yield call


def start_body(**fields: Any) -> dict[str, Any]:
    return {"key": "noop_chain", "processName": "x", "variables": {}, **fields}


def nested(depth: int) -> dict[str, Any]:
    """A start body whose objects nest ``depth`` levels, the body itself included."""
    value: dict[str, Any] = {}
    for _ in range(depth - 2):
        value = {"a": value}
    return start_body(variables=value)


# ------------------------------------------------------------------ JSON bodies

MALFORMED = [b"{not json", b"", b"[1, 2", b'{"key": "noop_chain",}', b'{"a": 1} trailing',
             b'{"processName": "x\x01"}',  # a raw control character inside a string
             b"NaN", b'{"key": "noop_chain", "processName": "x", "variables": {"a": NaN}}',
             b'{"key": "noop_chain", "processName": "x", "variables": {"a": Infinity}}',
             b'{"key": "noop_chain", "processName": "x", "variables": {"a": 1' + b"0" * 5000 + b"}}"]


def test_malformed_json_is_400(http, probe) -> None:
    for raw in MALFORMED:
        r = http("POST", "/process", data=raw, headers={"Content-Type": JSON})
        refused(probe, r, 400, "JSON", raw[:60])


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json",
                                          "application/xml", "application/json; charset=latin-1"])
def test_a_body_that_is_not_json_is_415(http, probe, content_type) -> None:
    data = json.dumps(start_body()).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    refused(probe, http("POST", "/process", data=data, headers=headers), 415)


def test_a_body_over_the_configured_limit_is_413_on_every_upload(http, probe) -> None:
    big = "x" * (MAX_BODY + 1)
    refused(probe, http("POST", "/process", json=start_body(variables={"a": big})), 413, str(MAX_BODY))
    refused(probe, http("POST", "/model", data=big.encode(), headers={"Content-Type": "application/xml"}), 413)
    refused(probe, http("POST", "/model", files={"file": ("m.bpmn", big.encode())}), 413)
    # Without a Content-Length (chunked), the limit holds all the same.
    body = json.dumps(start_body(variables={"a": big})).encode()
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    refused(probe, http("POST", "/process", data=chunks, headers={"Content-Type": JSON}), 413, str(MAX_BODY))
    assert probe.parses == 0


def test_a_multipart_text_field_over_the_form_limit_is_413(http, probe) -> None:
    template = "x" * (Flask.default_config["MAX_FORM_MEMORY_SIZE"] + 1)
    assert len(template) < MAX_BODY  # the whole body is under the limit: this is the limit of one field
    files = {"file": ("m.bpmn", example("noop_chain.bpmn"))}
    r = http("POST", "/model", files=files, data={"outputTemplate": template})
    refused(probe, r, 413, "multipart text field")
    assert probe.parses == 0


@pytest.mark.parametrize("variables", [[1], "a", 5, None, True, [{"a": 1}]])
def test_variables_of_the_wrong_type_are_400(http, probe, variables) -> None:
    refused(probe, http("POST", "/process", json=start_body(variables=variables)), 400, "variables")


@pytest.mark.parametrize("fields, message", [
    ({"processName": 5}, "processName"), ({"processName": ""}, "processName"),
    ({"processName": " \u3000"}, "processName"),
    ({"processName": "x" * 256}, "longer than 255"), ({"debug": "yes"}, "debug"), ({"key": 5}, "key"),
    ({"key": None}, "modelId, deploymentId or key"), ({"modelId": ["a"]}, "modelId"),
    ({"variables": {"__builtins__": {}}}, "reserved"),
])
def test_fields_of_the_wrong_type_or_value_are_400(http, probe, fields, message) -> None:
    refused(probe, http("POST", "/process", json=start_body(**fields)), 400, message)


# Written as JSON text: ``json=`` would refuse to encode some, and the point is what the server reads.
TEXT_ATTACKS = [
    ('{"key": "noop_chain", "processName": "x", "variables": {"a": "\\u0000"}}', "NUL"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"a\\u0000b": 1}}', "NUL"),
    ('{"key": "noop_chain", "processName": "x\\u0000", "variables": {}}', "NUL"),
    ('{"key": "noop\\u0000chain", "processName": "x", "variables": {}}', "NUL"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"a": "\\ud800"}}', "surrogate"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"a": ["ok", "\\udfff"]}}', "surrogate"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"\\udc00": 1}}', "surrogate"),
    ('{"key": "noop_chain", "processName": "\\ud83d", "variables": {}}', "surrogate"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"a": 1e999}}', "finite"),
]
RAW_BYTES = [
    b'{"key": "noop_chain", "processName": "\xff", "variables": {}}',  # not UTF-8 at all
    b'{"key": "noop_chain", "processName": "x", "variables": {"a": "\xc0\xaf"}}',  # overlong encoding
    b'{"key": "noop_chain", "processName": "x", "variables": {"a": "\xed\xa0\x80"}}',  # an encoded surrogate
    b'{"key": "noop_chain", "processName": "x", "variables": {"a": "\xe2\x82"}}',  # truncated sequence
    "{\"key\": \"noop_chain\", \"processName\": \"é\", \"variables\": {}}".encode("latin-1"),
]


def test_nul_lone_surrogates_and_bytes_that_are_not_utf8_are_400(http, probe) -> None:
    for text, message in TEXT_ATTACKS:
        refused(probe, http("POST", "/process", data=text.encode(), headers={"Content-Type": JSON}), 400, message, text)
    for raw in RAW_BYTES:
        refused(probe, http("POST", "/process", data=raw, headers={"Content-Type": JSON}), 400, "UTF-8", raw)


def test_nesting_deeper_than_the_limit_is_400_and_the_limit_itself_is_accepted(http, probe) -> None:
    refused(probe, http("POST", "/process", json=nested(MAX_DEPTH + 1)), 400, f"deeper than {MAX_DEPTH}")
    deep_list = start_body(variables={"a": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))})
    refused(probe, http("POST", "/process", json=deep_list), 400, f"deeper than {MAX_DEPTH}")
    # Far deeper than Python's parser could recurse: refused before parsing, and fast.
    began = time.monotonic()
    bomb = b'{"variables": ' + b"[" * (MAX_BODY - 100) + b"}"
    refused(probe, http("POST", "/process", data=bomb, headers={"Content-Type": JSON}), 400, "deeper")
    assert time.monotonic() - began < 2
    # Escaped quotes that never close a string: a scanner that retried from each quote would be quadratic.
    began = time.monotonic()
    quotes = b'{"a": "' + b'\\"[' * ((MAX_BODY - 100) // 3)
    refused(probe, http("POST", "/process", data=quotes, headers={"Content-Type": JSON}), 400, "malformed JSON")
    assert time.monotonic() - began < 2
    r = http("POST", "/process", json=nested(MAX_DEPTH))
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------ ids

UNKNOWN = [("GET", "/process/999"), ("PUT", "/process/999/cancel"), ("PUT", "/process/999/delete"),
           ("GET", "/task/999"), ("GET", "/task/999/history"), ("PUT", "/task/999/reRun"),
           ("PUT", "/task/999/resume"), ("GET", "/task?processInstanceId=999"),
           ("GET", "/model/00000000-0000-4000-8000-000000000000")]


def test_unknown_ids_are_404(http, probe) -> None:
    for method, path in UNKNOWN:
        refused(probe, http(method, path), 404, "not found")
    for field in ("key", "modelId", "deploymentId"):
        body = {"processName": "x", "variables": {}, field: "00000000-0000-4000-8000-000000000000"}
        refused(probe, http("POST", "/process", json=body), 404, "00000000-0000-4000-8000-000000000000")


WRONG_SHAPES = ["abc", "1e3", "1" * 40, "-1", "+1", "0x1f", " 1", "1.0", "%C2%B961", "%D9%A1%D9%A2", "%EF%BC%91",
                "1%00", "%FF", "%ED%A0%80", "1%20OR%201=1"]


def test_ids_of_the_wrong_shape_are_404_without_touching_the_database(http, probe) -> None:
    paths = [p for shape in WRONG_SHAPES for p in (
        f"/process/{shape}", f"/task/{shape}", f"/task/{shape}/history", f"/task?processInstanceId={shape}")]
    paths += ["/model/nope", "/model/00000000-0000-4000-8000-00000000000G", "/model/%00",
              "/model/00000000-0000-4000-8000-000000000000%00", "/model/" + "a" * 5000]
    requests_ = [("GET", p) for p in paths]
    requests_ += [("PUT", p) for shape in WRONG_SHAPES for p in (f"/process/{shape}/cancel", f"/task/{shape}/reRun")]
    for method, path in requests_:
        before = probe.statements
        r = http(method, path)
        assert probe.statements == before, f"{method} {path} ran SQL"
        refused(probe, r, 404, "", path)


def test_task_list_without_a_process_is_400(http, probe) -> None:
    refused(probe, http("GET", "/task"), 400, "processInstanceId")
    refused(probe, http("GET", "/task?processInstanceId="), 400, "processInstanceId")


# ------------------------------------------------------------------ BPMN uploads

XML = {"Content-Type": "application/xml"}
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"><process id="p" name="&lol9;"/></definitions>"""


def test_bpmn_that_does_not_parse_is_400_with_the_parsers_message(http, probe) -> None:
    for doc in (b"<definitions", b"<definitions></process>", b"not xml at all", b"<a>\x00</a>"):
        try:
            etree.fromstring(doc)
            raise AssertionError(f"lxml parsed {doc!r}")
        except etree.XMLSyntaxError as exc:
            parser_message = str(exc)
        refused(probe, http("POST", "/model", data=doc, headers=XML), 400, parser_message, doc)
    no_process = b'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"/>'
    refused(probe, http("POST", "/model", data=no_process, headers=XML), 400, "no process")
    refused(probe, http("POST", "/model", data=b" \n ", headers=XML), 400, "empty")


def test_bpmn_with_a_doctype_or_entities_is_refused_before_any_parser_sees_it(http, probe, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{secret}">]>'
           f'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"><process id="p" name="&xxe;"/>'
           f"</definitions>").encode()
    hidden = b"<?xml version='1.0'?><!--" + b"x" * 8192 + b'--><!DOCTYPE d [<!ENTITY e "e">]><definitions/>'
    lowercase = b'<!doctype d [<!entity e "e">]><definitions/>'
    for doc in (BILLION_LAUGHS, xxe, hidden, lowercase, b'<!DOCTYPE definitions SYSTEM "http://127.0.0.1:9/x.dtd">'
                b"<definitions/>"):
        began = time.monotonic()
        r = http("POST", "/model", data=doc, headers=XML)
        refused(probe, r, 400, "DOCTYPE", doc[:80])
        assert time.monotonic() - began < 2 and "TOP-SECRET-MARKER" not in r.text
        r = http("POST", "/model", files={"file": ("m.bpmn", doc)})
        refused(probe, r, 400, "DOCTYPE", doc[:80])
    # Other encodings would hide the markup from a byte search: the API reads UTF-8 only.
    utf16 = BILLION_LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16")
    refused(probe, http("POST", "/model", data=utf16, headers=XML), 400, "UTF-8")
    assert probe.parses == 0


@pytest.mark.parametrize("files, data, message", [
    ({}, {"key": "k"}, "'file' part"),
    ({"file": ("m.bpmn", b"\xff\xfe<definitions/>")}, {}, "UTF-8"),
    ({"file": ("m.bpmn", b"")}, {}, "empty"),
    ({"file": ("m.bpmn", None)}, {"key": "a\x00b"}, "NUL"),
    ({"file": ("m.bpmn", None)}, {"key": "k" * 256}, "longer than 255"),
    ({"file": ("m.bpmn", None)}, {"key": " "}, "key must not be empty"),
    ({"file": ("m.bpmn", None)}, {"name": "n" * 256}, "longer than 255"),
    ({"file": ("m.bpmn", None)}, {"outputTemplate": "{{ unclosed"}, "output template"),
    ({"file": ("m.bpmn", None), "outputTemplate": ("t.j2", b"\xff")}, {}, "UTF-8"),
    ({"file": ("m\x00.bpmn", None)}, {}, "NUL"),
])
def test_bad_multipart_uploads_are_400(http, probe, files, data, message) -> None:
    files = {k: (name, content if content is not None else example("noop_chain.bpmn")) for k, (name, content)
             in files.items()}
    if not files:
        files = {"other": ("x", b"x")}  # still multipart, without the 'file' part
    refused(probe, http("POST", "/model", files=files, data=data), 400, message)


def test_an_upload_that_is_neither_multipart_nor_xml_is_415(http, probe) -> None:
    for content_type in ("application/json", "text/plain", "application/octet-stream"):
        r = http("POST", "/model", data=example("noop_chain.bpmn"), headers={"Content-Type": content_type})
        refused(probe, r, 415, "multipart")
    assert probe.parses == 0


# ------------------------------------------------------------------ outside the resources

def test_errors_outside_the_resources_are_json_too(http, probe) -> None:
    refused(probe, http("GET", "/nowhere"), 404)
    refused(probe, http("GET", "/process/"), 404)
    r = http("DELETE", "/process/1")
    refused(probe, r, 405)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET"} and "DELETE" not in r.headers["Allow"]
    r = http("PUT", "/task/1/history")
    refused(probe, r, 405)
    assert "PUT" not in r.headers["Allow"]
    refused(probe, http("POST", "/task"), 405)
    refused(probe, http("PATCH", "/model"), 405)



# ------------------------------------------------------------------ the Activiti-style face (second seed)

RUNTIME = "/runtime/process-instances"
QUERY = "/query/process-instances"
DEPLOYMENTS = "/repository/deployments"
DEFINITIONS = "/repository/process-definitions"
# Every operation of the face that reads a JSON body, with a body it would accept.
JSON_OPERATIONS = [
    ("POST", RUNTIME, {"processDefinitionKey": "noop_chain"}),
    ("PUT", f"{RUNTIME}/1", {"action": "suspend"}),
    ("POST", f"{RUNTIME}/1/variables", [{"name": "b", "value": 1}]),
    ("PUT", f"{RUNTIME}/1/variables", [{"name": "b", "value": 1}]),
    ("PUT", f"{RUNTIME}/1/variables/a", {"value": 2}),
    ("POST", "/runtime/ext/assigncheck", {"processDefinitionKey": "noop_chain"}),
    ("POST", QUERY, {"businessKey": "k"}),
]


@pytest.fixture
def activiti(base_url: str, probe: Probe, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``http`` with process 1 started through the runtime API (variable ``a``), and a baseline that also
    holds every process row: a refused request must not have changed a variable or a flag either."""
    r = requests.post(f"{base_url}{RUNTIME}", timeout=10, json={
        "processDefinitionKey": "noop_chain", "businessKey": "order-1",
        "variables": [{"name": "a", "type": "integer", "value": 1}]})
    assert r.status_code == 201 and r.json()["id"] == "1", r.text
    counts = probe.state

    def state() -> dict[str, Any]:
        with probe.service.store.read() as tx:
            rows = tx.cx.exec_driver_sql("SELECT pk, version, status, suspended, business_key, tenant_id, "
                                         "variable_types, workflow_state FROM processes ORDER BY pk").all()
        return {**counts(), "process rows": [tuple(row) for row in rows]}

    monkeypatch.setattr(probe, "state", state)
    probe.baseline = probe.state()
    with requests.Session() as session:
        def call(method: str, path: str, **kwargs: Any) -> requests.Response:
            return session.request(method, base_url + path, timeout=30, **kwargs)
        yield call


def test_activiti_malformed_json_is_400(activiti, probe) -> None:
    for method, path, _ in JSON_OPERATIONS:
        for raw in MALFORMED:
            r = activiti(method, path, data=raw, headers={"Content-Type": JSON})
            refused(probe, r, 400, "", (method, path, raw[:60]))


def test_activiti_bodies_that_are_not_json_are_415(activiti, probe) -> None:
    for method, path, body in JSON_OPERATIONS:
        for content_type in (None, "text/plain", "application/x-www-form-urlencoded", "application/xml",
                             "application/json; charset=latin-1"):
            headers = {"Content-Type": content_type} if content_type else {}
            r = activiti(method, path, data=json.dumps(body).encode(), headers=headers)
            refused(probe, r, 415, "", (method, path, content_type))
    for content_type in ("application/json", "application/xml", "text/plain"):
        r = activiti("POST", DEPLOYMENTS, data=example("noop_chain.bpmn"), headers={"Content-Type": content_type})
        refused(probe, r, 415, "multipart")
    assert probe.parses == 0


def test_activiti_bodies_over_the_limit_are_413(activiti, probe) -> None:
    big = "x" * (MAX_BODY + 1)
    for method, path, _ in JSON_OPERATIONS:
        refused(probe, activiti(method, path, json={"padding": big}), 413, str(MAX_BODY), (method, path))
    body = {"processDefinitionKey": "noop_chain", "variables": [{"name": "v", "value": big}]}
    refused(probe, activiti("POST", RUNTIME, json=body), 413, str(MAX_BODY))
    refused(probe, activiti("POST", DEPLOYMENTS, files={"file": ("m.bpmn", big.encode())}), 413)
    assert probe.parses == 0


PAGING_TEXT = [({"sort": "colour"}, "sort"), ({"sort": "ID"}, "sort"), ({"order": "up"}, "order"),
               ({"start": "-1"}, "start"), ({"start": str(2**31)}, "start"), ({"start": "1" * 5000}, "start"),
               ({"size": "0"}, "size"), ({"size": "x"}, "size"), ({"size": "\u0663"}, "size"),
               ({"size": "1_0"}, "size"), ({"size": "1.5"}, "size"), ({"size": " 1"}, "size")]
PAGING_JSON = [({"sort": "colour"}, "sort"), ({"sort": ["id"]}, "sort"), ({"order": "up"}, "order"),
               ({"start": -1}, "start"), ({"start": 2**31}, "start"), ({"start": 10**100}, "start"),
               ({"start": "0"}, "start"), ({"size": 0}, "size"), ({"size": "10"}, "size"), ({"size": 1.5}, "size"),
               ({"size": True}, "size")]


def test_activiti_unknown_sort_order_or_paging_is_400_before_any_query(activiti, probe) -> None:
    cases = [("GET", path, {"params": params}, message) for path in (RUNTIME, DEPLOYMENTS, DEFINITIONS)
             for params, message in PAGING_TEXT]
    cases += [("POST", QUERY, {"json": body}, message) for body, message in PAGING_JSON]
    for method, path, kwargs, message in cases:
        before = probe.statements
        r = activiti(method, path, **kwargs)
        assert probe.statements == before, (method, path, kwargs)
        refused(probe, r, 400, message, (method, path, kwargs))


def test_activiti_page_size_is_clamped_not_refused(activiti, probe, monkeypatch) -> None:
    for key in ("b", "c"):
        assert activiti("POST", RUNTIME, json={"processDefinitionKey": "noop_chain", "businessKey": key}).ok
    monkeypatch.setattr(api.activiti, "MAX_PAGE_SIZE", 2)  # three processes, pages of at most two
    for method, path, kwargs in (("GET", RUNTIME, {"params": {"size": "100000"}}),
                                 ("GET", RUNTIME, {"params": {"size": "9" * 5000}}),
                                 ("POST", QUERY, {"json": {"size": 10**30}})):
        r = activiti(method, path, **kwargs)
        assert r.status_code == 200, r.text
        page = r.json()
        assert (page["size"], len(page["data"]), page["total"]) == (2, 2, 3), (method, kwargs)
    for path in (DEPLOYMENTS, DEFINITIONS):
        r = activiti("GET", path, params={"size": "100000"})
        assert r.status_code == 200 and r.json()["size"] == 1, r.text


BAD_VARIABLE_LISTS = [
    {"a": 1}, "a", 5, True, [1], [None], [["a", 1]], [{"value": 1}], [{"name": 5, "value": 1}],
    [{"name": "", "value": 1}], [{"name": " \u3000", "value": 1}], [{"name": "n"}],
    [{"name": "n", "type": 5, "value": 1}], [{"name": "n", "type": "blob", "value": 1}],
    [{"name": "n", "type": "integer", "value": "1"}], [{"name": "n", "type": "integer", "value": 2**31}],
    [{"name": "n", "type": "short", "value": 1.0}], [{"name": "n", "type": "long", "value": True}],
    [{"name": "n", "type": "long", "value": 2**63}], [{"name": "n", "type": "double", "value": 10**400}],
    [{"name": "n", "type": "double", "value": "1"}], [{"name": "n", "type": "boolean", "value": 0}],
    [{"name": "n", "type": "date", "value": "yesterday"}], [{"name": "n", "type": "date", "value": 5}],
    [{"name": "n", "type": "string", "value": 5}], [{"name": "__n", "value": 1}], [{"name": "orch", "value": 1}],
    [{"name": "n", "value": 1}, {"name": "n", "value": 2}],
]
BAD_VARIABLE_UPDATES = [
    ("a", {}), ("a", {"value": "x", "type": "integer"}), ("a", {"value": 1, "type": "blob"}),
    ("a", {"value": 1, "type": 5}), ("a", {"value": 10**400, "type": "double"}), ("a", {"name": "b", "value": 1}),
    ("a", {"name": 5, "value": 1}), ("__a", {"value": 1}), ("orch", {"value": 1}), ("a", [{"value": 1}]),
]


def test_activiti_variables_of_the_wrong_type_are_400(activiti, probe) -> None:
    for variables in BAD_VARIABLE_LISTS:
        body = {"processDefinitionKey": "noop_chain", "variables": variables}
        refused(probe, activiti("POST", RUNTIME, json=body), 400, "", variables)
        for method in ("POST", "PUT"):
            refused(probe, activiti(method, f"{RUNTIME}/1/variables", json=variables), 400, "", (method, variables))
    for name, body in BAD_VARIABLE_UPDATES:
        refused(probe, activiti("PUT", f"{RUNTIME}/1/variables/{name}", json=body), 400, "", (name, body))


@pytest.mark.parametrize("body, message", [
    ({"processDefinitionKey": 5}, "processDefinitionKey"), ({"processDefinitionKey": ""}, "processDefinitionKey"),
    ({"processDefinitionKey": " \u3000"}, "processDefinitionKey"),
    ({"processDefinitionKey": "k" * 256}, "processDefinitionKey"), ({"businessKey": "b" * 256}, "businessKey"),
    ({"businessKey": ""}, "businessKey"), ({"tenantId": ["t"]}, "tenantId"), ({"tenantId": "t" * 256}, "tenantId"),
    ({"processDefinitionKey": None}, "processDefinitionId or processDefinitionKey"),
    ({"processDefinitionKey": "nope"}, "nope"),
    ({"processDefinitionId": "noop_chain:9:00000000-0000-4000-8000-000000000000"}, "not found"),
    ({"processDefinitionId": "nope"}, "not found"), ({"processDefinitionId": "x" * 400}, "processDefinitionId"),
])
def test_activiti_start_fields_of_the_wrong_type_or_value_are_400(activiti, probe, body, message) -> None:
    refused(probe, activiti("POST", RUNTIME, json={"processDefinitionKey": "noop_chain", **body}), 400, message)


@pytest.mark.parametrize("body, message", [
    ({"suspended": "true"}, "suspended"), ({"excludeSubprocesses": 1}, "excludeSubprocesses"),
    ({"businessKey": 5}, "businessKey"), ({"id": 1}, "id"), ({"tenantId": "t" * 256}, "tenantId"),
    ({"tenantIdLike": "acme\\"}, "escape"), ({"processDefinitionId": "x" * 400}, "processDefinitionId"),
    ({"involvedUser": {"id": "bob"}}, "involvedUser"),
    ({"variables": {"name": "a"}}, "variables"), ({"variables": ["a"]}, "filter"),
    ({"variables": [{"name": "a", "value": 1, "operation": 5}]}, "operation"),
    ({"variables": [{"name": "a", "value": 1, "operation": "about"}]}, "operation"),
    ({"variables": [{"name": "a", "value": 1, "type": []}]}, "type"),
    ({"variables": [{"name": "a", "value": {"k": 1}}]}, "type"),
    ({"variables": [{"name": "a", "value": "1", "type": "long"}]}, "long"),
    ({"variables": [{"name": "a", "value": 10**400, "type": "double"}]}, "double"),
    ({"variables": [{"name": "a", "value": 1, "operation": "like"}]}, "like"),
    ({"variables": [{"name": "a", "value": "%a" * 200, "operation": "like"}]}, "like"),
    ({"variables": [{"name": "a", "value": True, "operation": "lessThan"}]}, "boolean"),
    ({"variables": [{"value": 1}]}, "name"), ({"variables": [{"name": "a"}]}, "value"),
])
def test_activiti_query_bodies_of_the_wrong_type_are_400_before_any_query(activiti, probe, body, message) -> None:
    before = probe.statements
    r = activiti("POST", QUERY, json=body)
    assert probe.statements == before, "refused after a query"
    refused(probe, r, 400, message)


@pytest.mark.parametrize("path, params, message", [
    (RUNTIME, {"suspended": "maybe"}, "suspended"), (RUNTIME, {"includeProcessVariables": "1"}, "include"),
    (RUNTIME, {"businessKey": "b" * 256}, "longer than 255"), (RUNTIME, {"tenantIdLike": "a\\"}, "escape"),
    (RUNTIME, {"processDefinitionKey": "k" * 256}, "longer than 255"),
    (DEPLOYMENTS, {"nameLike": "\\"}, "escape"), (DEPLOYMENTS, {"name": "n" * 256}, "longer than 255"),
    (DEFINITIONS, {"version": "0"}, "version"), (DEFINITIONS, {"version": str(2**63)}, "version"),
    (DEFINITIONS, {"version": "1e3"}, "version"), (DEFINITIONS, {"latest": "yes"}, "latest"),
    (DEFINITIONS, {"keyLike": "x\\\\\\"}, "escape"), (DEFINITIONS, {"deploymentId": "d" * 37}, "deploymentId"),
])
def test_activiti_list_filters_of_the_wrong_shape_are_400_before_any_query(activiti, probe, path, params,
                                                                            message) -> None:
    before = probe.statements
    r = activiti("GET", path, params=params)
    assert probe.statements == before, "refused after a query"
    refused(probe, r, 400, message)


# Written as JSON text: ``json=`` would refuse to encode some, and the point is what the server reads.
ACTIVITI_TEXT_ATTACKS = [
    ("POST", RUNTIME, '{"processDefinitionKey": "noop_chain", "businessKey": "a\\u0000b"}', "NUL"),
    ("POST", RUNTIME, '{"processDefinitionKey": "noop\\u0000chain"}', "NUL"),
    ("POST", RUNTIME, '{"processDefinitionKey": "noop_chain", "tenantId": "\\ud800"}', "surrogate"),
    ("POST", RUNTIME, '{"processDefinitionKey": "noop_chain", "variables": [{"name": "a\\u0000", "value": 1}]}',
     "NUL"),
    ("POST", RUNTIME, '{"processDefinitionKey": "noop_chain", "variables": [{"name": "v", "value": "\\udfff"}]}',
     "surrogate"),
    ("POST", RUNTIME, '{"processDefinitionKey": "noop_chain", "variables": [{"name": "v", "value": 1e999}]}',
     "finite"),
    ("POST", f"{RUNTIME}/1/variables", '[{"name": "v", "value": "\\u0000"}]', "NUL"),
    ("PUT", f"{RUNTIME}/1/variables", '[{"name": "\\ud83d", "value": 1}]', "surrogate"),
    ("PUT", f"{RUNTIME}/1/variables/a", '{"value": "x\\u0000"}', "NUL"),
    ("PUT", f"{RUNTIME}/1", '{"action": "jumpToActivity", "activityId": "t\\u0000"}', "NUL"),
    ("POST", "/runtime/ext/assigncheck", '{"processDefinitionKey": "\\u0000"}', "NUL"),
    ("POST", QUERY, '{"businessKey": "\\u0000"}', "NUL"),
    ("POST", QUERY, '{"variables": [{"name": "a", "value": "\\ud800"}]}', "surrogate"),
]
TEXT_FILTERS = {RUNTIME: ("id", "processDefinitionKey", "processDefinitionId", "businessKey", "involvedUser",
                          "superProcessInstanceId", "subProcessInstanceId", "tenantId", "tenantIdLike"),
                DEPLOYMENTS: ("name", "nameLike"),
                DEFINITIONS: ("key", "keyLike", "name", "nameLike", "deploymentId")}


def test_activiti_nul_and_lone_surrogates_are_400(activiti, probe) -> None:
    for method, path, text, message in ACTIVITI_TEXT_ATTACKS:
        r = activiti(method, path, data=text.encode(), headers={"Content-Type": JSON})
        refused(probe, r, 400, message, text)
    for path, names in TEXT_FILTERS.items():  # PostgreSQL refuses NUL in a query parameter: never sent there
        for name in names:
            before = probe.statements
            r = activiti("GET", f"{path}?{name}=a%00b")
            assert probe.statements == before, (path, name)
            refused(probe, r, 400, "NUL", (path, name))
    r = activiti("POST", DEPLOYMENTS, files={"file": ("m.bpmn", example("noop_chain.bpmn"))}, data={"key": "a\x00b"})
    refused(probe, r, 400, "NUL")
    assert probe.parses == 0


def test_activiti_nesting_deeper_than_the_limit_is_400(activiti, probe) -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    for method, path, body in (("POST", RUNTIME, {"processDefinitionKey": "noop_chain",
                                                  "variables": [{"name": "v", "value": deep}]}),
                               ("PUT", f"{RUNTIME}/1/variables", [{"name": "v", "value": deep}]),
                               ("PUT", f"{RUNTIME}/1/variables/a", {"value": deep}),
                               ("POST", QUERY, {"variables": [{"name": "v", "value": deep}]}),
                               ("POST", "/runtime/ext/assigncheck", {"taskId": deep})):
        refused(probe, activiti(method, path, json=body), 400, f"deeper than {MAX_DEPTH}", (method, path))
    began = time.monotonic()
    bomb = b"[" * (MAX_BODY - 100)
    refused(probe, activiti("PUT", f"{RUNTIME}/1/variables", data=bomb, headers={"Content-Type": JSON}), 400, "deeper")
    assert time.monotonic() - began < 2


@pytest.mark.parametrize("body, status, message", [
    ({"action": "pause"}, 400, "action"), ({"action": None}, 400, "action"), ({"action": ["suspend"]}, 400, "action"),
    ({}, 400, "action"), ({"action": "activate"}, 409, "active"), ({"action": "jumpToActivity"}, 400, "activityId"),
    ({"action": "jumpToActivity", "activityId": 5}, 400, "activityId"),
    ({"action": "jumpToActivity", "activityId": "a" * 256}, 400, "activityId"),
    ({"action": "jumpToActivity", "activityId": "nowhere"}, 400, "not an activity"),
    # The end event would end the process; events, gateways and flows are no activities.
    ({"action": "jumpToActivity", "activityId": "end"}, 400, "not an activity"),
    ({"action": "jumpToActivity", "activityId": "start"}, 400, "not an activity"),
    ({"action": "jumpToActivity", "activityId": "f1"}, 400, "not an activity"),
    ({"action": "jumpToActivity", "activityId": "t2", "jumpOrigin": 5}, 400, "jumpOrigin"),
])
def test_activiti_actions_that_cannot_be_done_write_nothing(activiti, probe, body, status, message) -> None:
    refused(probe, activiti("PUT", f"{RUNTIME}/1", json=body), status, message, body)


def test_activiti_variables_and_assignments_that_cannot_be_had_write_nothing(activiti, probe) -> None:
    refused(probe, activiti("POST", f"{RUNTIME}/1/variables", json=[{"name": "a", "value": 2}]), 409, "exist")
    refused(probe, activiti("PUT", f"{RUNTIME}/1/variables/zzz", json={"value": 2}), 404, "zzz")
    refused(probe, activiti("POST", "/runtime/ext/assigncheck", json={}), 400, "processDefinitionKey")
    refused(probe, activiti("POST", "/runtime/ext/assigncheck", json={"processDefinitionKey": 5}), 400,
            "processDefinitionKey")
    body = {"processDefinitionKey": "noop_chain", "activityId": "t1"}
    refused(probe, activiti("POST", "/runtime/ext/assigncheck", json=body), 404, "t1")


UUID_SHAPES = ["nope", "00000000-0000-4000-8000-00000000000G", "%00", "00000000-0000-4000-8000-000000000000%00",
               "a" * 5000, "00000000-0000-4000-8000-00000000000", "00000000-0000-4000-8000-000000000000x",
               "%E2%80%8B00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000%0A",
               "00000000-0000-4000-8000-00000000000%EF%BC%91", "x:00000000-0000-4000-8000-000000000000"]


def test_activiti_ids_of_the_wrong_shape_are_404_without_touching_the_database(activiti, probe) -> None:
    cases: list[tuple[str, str, Any]] = []
    for shape in WRONG_SHAPES:
        cases += [("GET", f"{RUNTIME}/{shape}", None), ("DELETE", f"{RUNTIME}/{shape}", None),
                  ("PUT", f"{RUNTIME}/{shape}", {"action": "suspend"}), ("GET", f"{RUNTIME}/{shape}/variables", None),
                  ("POST", f"{RUNTIME}/{shape}/variables", [{"name": "b", "value": 1}]),
                  ("PUT", f"{RUNTIME}/{shape}/variables", [{"name": "b", "value": 1}]),
                  ("GET", f"{RUNTIME}/{shape}/variables/a", None),
                  ("PUT", f"{RUNTIME}/{shape}/variables/a", {"value": 1})]
    for shape in UUID_SHAPES:
        cases += [("GET", f"{DEPLOYMENTS}/{shape}", None), ("DELETE", f"{DEPLOYMENTS}/{shape}", None),
                  ("GET", f"{DEFINITIONS}/noop_chain:1:{shape}", None),
                  ("GET", f"{DEFINITIONS}/noop_chain:1:{shape}/resourcedata", None)]
        if "x:" not in shape:  # a bare deployment id names its definition too
            cases += [("GET", f"{DEFINITIONS}/{shape}", None), ("GET", f"{DEFINITIONS}/{shape}/resourcedata", None)]
    cases.append(("POST", "/runtime/ext/assigncheck", {"processDefinitionId": "noop_chain:1:nope"}))
    for method, path, body in cases:
        before = probe.statements
        r = activiti(method, path, json=body) if body is not None else activiti(method, path)
        assert probe.statements == before, f"{method} {path} ran SQL"
        refused(probe, r, 404, "", (method, path))


def test_activiti_unknown_ids_are_404(activiti, probe) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    for method, path, body in (("GET", f"{RUNTIME}/999", None), ("PUT", f"{RUNTIME}/999", {"action": "suspend"}),
                               ("DELETE", f"{RUNTIME}/999", None), ("GET", f"{RUNTIME}/999/variables", None),
                               ("POST", f"{RUNTIME}/999/variables", []), ("PUT", f"{RUNTIME}/999/variables", []),
                               ("GET", f"{RUNTIME}/1/variables/zzz", None),
                               ("GET", f"{DEPLOYMENTS}/{unknown}", None), ("DELETE", f"{DEPLOYMENTS}/{unknown}", None),
                               ("GET", f"{DEFINITIONS}/noop_chain:1:{unknown}", None),
                               ("GET", f"{DEFINITIONS}/noop_chain:1:{unknown}/resourcedata", None),
                               ("POST", "/runtime/ext/assigncheck", {"processDefinitionId": f"noop_chain:1:{unknown}"}),
                               ("POST", "/runtime/ext/assigncheck", {"processDefinitionKey": "nope"})):
        r = activiti(method, path, json=body) if body is not None else activiti(method, path)
        refused(probe, r, 404, "not found", (method, path))
    # The deployment exists, that key and version do not: no such definition.
    dep = probe.service.list_definitions()[0].deployment_id
    refused(probe, activiti("GET", f"{DEFINITIONS}/other:7:{dep}"), 404, "not found")
    refused(probe, activiti("GET", f"{DEFINITIONS}/other:7:{dep}/resourcedata"), 404, "not found")
    refused(probe, activiti("POST", RUNTIME, json={"processDefinitionId": f"other:7:{dep}"}), 400, "not found")


@pytest.mark.parametrize("files, data, message", [
    ({"key": (None, b"k")}, {}, "one file part"),
    ({"file": ("m.bpmn", b"\xff\xfe<definitions/>")}, {}, "UTF-8"),
    ({"file": ("m.bpmn", b"  ")}, {}, "empty"),
    ({"file": ("m.bpmn", b"<definitions")}, {}, "does not parse"),
    ({"file": ("m.bpmn", BILLION_LAUGHS)}, {}, "DOCTYPE"),
    ({"file": ("m.bpmn", None)}, {"key": "k" * 256}, "longer than 255"),
    ({"file": ("m.bpmn", None)}, {"key": " "}, "blank"),
    ({"file": ("m.bpmn", None)}, {"name": "n" * 256}, "longer than 255"),
    ({"file": ("m.bpmn", None)}, {"name": "\x00"}, "NUL"),
    ({"file": ("m\x00.bpmn", None)}, {}, "NUL"),
    ({"file": ("m.bpmn", None), "other": ("o.bpmn", None)}, {}, "one file part"),
])
def test_activiti_bad_deployments_are_400(activiti, probe, files, data, message) -> None:
    files = {k: (name, content if content is not None else example("noop_chain.bpmn")) for k, (name, content)
             in files.items()}
    refused(probe, activiti("POST", DEPLOYMENTS, files=files, data=data), 400, message)
    if message != "does not parse":  # the parser's refusal: the only case that reaches it
        assert probe.parses == 0


def test_activiti_errors_outside_the_resources_are_json_too(activiti, probe) -> None:
    for method, path, allowed in (("PATCH", RUNTIME, {"GET", "POST"}),
                                  ("POST", f"{RUNTIME}/1", {"GET", "PUT", "DELETE"}),
                                  ("DELETE", QUERY, {"POST"}), ("PUT", DEFINITIONS, {"GET"}),
                                  ("POST", f"{DEPLOYMENTS}/00000000-0000-4000-8000-000000000000", {"GET", "DELETE"})):
        r = activiti(method, path)
        refused(probe, r, 405, "", (method, path))
        assert set(r.headers["Allow"].replace(" ", "").split(",")) - {"HEAD", "OPTIONS"} == allowed, (method, path)
    refused(probe, activiti("GET", "/runtime/nowhere"), 404)
