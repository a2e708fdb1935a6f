"""HttpStone against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stones.base import Done, Failed, Pending, RetryableError, StoneContext, TerminalError
from stones.http import HttpStone


class FakeApi:
    """Routes ``(method, path)`` to ``(status, body)``; a list of answers is served in order."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, object]]] = {}
        self.requests: list[dict] = []

    def route(self, method: str, path: str, *answers: tuple[int, object]) -> None:
        self.routes[(method, path)] = list(answers)

    def answer(self, method: str, path: str) -> tuple[int, object]:
        answers = self.routes.get((method, path))
        if not answers:
            return 404, {"error": "no such route"}
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeApi, str]]:
    # A proxy from the environment must not intercept calls to the local server.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(raw) if raw else None,
                }
            )
            status, body = fake.answer(self.command, self.path)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_ctx(params: dict, state: dict | None = None) -> StoneContext:
    return StoneContext(
        task_id="task-7",
        process_instance_id="proc-1",
        name="call",
        namespace=None,
        params=params,
        idempotency_key="proc-1:task-7:1",
        state=state or {},
    )


def test_start_posts_with_idempotency_key_then_polls_status(api):
    fake, base = api
    fake.route("POST", "/jobs", (202, {"id": "job 42", "accepted": True}))
    fake.route(
        "GET",
        "/jobs/job%2042/status",
        (200, {"state": {"phase": "queued"}}),
        (200, {"state": {"phase": "running"}}),
        (200, {"state": {"phase": "Completed"}, "ip": "10.0.0.9"}),
    )
    params = {
        "url": f"{base}/jobs",
        "headers": {"Authorization": "Bearer s3cret"},
        "statusUrl": "/jobs/{id}/status",
        "statusField": "state.phase",
        "size": "small",
        "count": 2,
    }
    stone = HttpStone()
    ctx = make_ctx(params)
    ctx.state = stone.start(ctx)

    post = fake.requests[0]
    assert post["method"] == "POST" and post["path"] == "/jobs"
    assert post["headers"]["Idempotency-Key"] == "proc-1:task-7:1"
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    assert post["body"] == {"size": "small", "count": 2}  # control keys are not sent
    assert ctx.state == {
        "response": {"id": "job 42", "accepted": True},
        "statusUrl": f"{base}/jobs/job%2042/status",
    }

    # Each poll from a fresh instance, as another worker would.
    assert HttpStone().monitor(ctx) == Pending(progress="queued")
    assert HttpStone().monitor(ctx) == Pending(progress="running")
    assert HttpStone().monitor(ctx) == Done({"state": {"phase": "Completed"}, "ip": "10.0.0.9"})
    polls = fake.requests[1:]
    assert [r["method"] for r in polls] == ["GET"] * 3
    assert all(r["headers"]["Authorization"] == "Bearer s3cret" for r in polls)


def test_no_status_url_is_done_with_start_response(api):
    fake, base = api
    fake.route("PUT", "/things/1", (200, {"name": "thing"}))
    stone = HttpStone()
    ctx = make_ctx({"url": f"{base}/things/1", "method": "put", "body": {"explicit": True}})
    ctx.state = stone.start(ctx)
    assert fake.requests[0]["body"] == {"explicit": True}
    assert ctx.state == {"response": {"name": "thing"}, "statusUrl": None}
    assert stone.monitor(ctx) == Done({"name": "thing"})


def test_non_json_start_response_is_kept_as_text(api):
    fake, base = api
    fake.route("POST", "/plain", (200, "ok, queued"))
    state = HttpStone().start(make_ctx({"url": f"{base}/plain"}))
    assert state == {"response": {"text": "ok, queued"}, "statusUrl": None}


def test_failure_value_fails_the_task(api):
    fake, base = api
    fake.route("POST", "/jobs", (201, {"links": {"status": f"{base}/status/9"}}))
    fake.route("GET", "/status/9", (200, {"status": "error", "detail": "no capacity"}))
    stone = HttpStone()
    ctx = make_ctx({"url": f"{base}/jobs", "statusUrl": "{links.status}"})
    ctx.state = stone.start(ctx)
    assert ctx.state["statusUrl"] == f"{base}/status/9"  # a whole-URL field is not escaped
    result = stone.monitor(ctx)
    assert isinstance(result, Failed)
    assert "'error'" in result.reason


def test_custom_success_and_failure_values(api):
    fake, base = api
    fake.route("GET", "/s", (200, {"status": "GREEN"}))
    params = {"url": f"{base}/x", "successValues": ["green"], "failureValues": ["red"]}
    ctx = make_ctx(params, state={"response": {}, "statusUrl": f"{base}/s"})
    assert HttpStone().monitor(ctx) == Done({"status": "GREEN"})


def test_server_error_is_retryable(api):
    fake, base = api
    fake.route("POST", "/jobs", (503, {"error": "try later"}))
    with pytest.raises(RetryableError) as info:
        HttpStone().start(make_ctx({"url": f"{base}/jobs"}))
    assert "503" in info.value.reason and info.value.code == "503"


def test_client_error_is_terminal_with_excerpt_and_no_secrets(api):
    _, base = api
    params = {"url": f"{base}/nowhere?token=abc", "headers": {"Authorization": "Bearer s3cret"}}
    with pytest.raises(TerminalError) as info:
        HttpStone().start(make_ctx(params))
    reason = info.value.reason
    assert "404" in reason and "no such route" in reason
    assert "s3cret" not in reason and "token=abc" not in reason


def test_unreachable_is_retryable(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nobody listens on the port any more: connection refused.
    with pytest.raises(RetryableError):
        HttpStone().start(make_ctx({"url": f"http://127.0.0.1:{port}/jobs", "timeout": 2}))


def test_status_endpoint_blip_keeps_polling(api):
    fake, base = api
    fake.route("GET", "/s", (502, "bad gateway"), (200, {"status": "done"}))
    ctx = make_ctx({"url": f"{base}/x"}, state={"response": {}, "statusUrl": f"{base}/s"})
    assert HttpStone().monitor(ctx) == Pending(progress="status check failed: 502")
    assert HttpStone().monitor(ctx) == Done({"status": "done"})


def test_missing_placeholder_field_is_terminal(api):
    fake, base = api
    fake.route("POST", "/jobs", (202, {"other": 1}))
    with pytest.raises(TerminalError, match="id"):
        HttpStone().start(make_ctx({"url": f"{base}/jobs", "statusUrl": "/jobs/{id}"}))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"url": "ftp://example.org/x"},
        {"url": "http://127.0.0.1:9/x", "timeout": 0},
        {"url": "http://127.0.0.1:9/x", "headers": []},
        {"url": "http://127.0.0.1:9/x", "method": "GET /x"},
    ],
)
def test_bad_params_are_terminal(params):
    with pytest.raises(TerminalError):
        HttpStone().start(make_ctx(params))
