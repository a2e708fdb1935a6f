"""HttpStone: calls an HTTP API, then optionally polls a status URL until it reports an outcome.

Params:

- ``url`` (required), ``method`` (default POST), ``headers`` (object), ``timeout`` (s, default 10)
- ``body``: JSON sent with the request; by default the params minus the control keys below
  (not sent for GET/HEAD unless given explicitly).
- ``statusUrl``: polled with GET by monitor. ``{field}`` placeholders (dotted paths) are
  filled from the start response JSON; a relative URL is resolved against ``url``.
- ``statusField`` (dotted path, default "status"), ``successValues``, ``failureValues``.

Header values are never logged or put in error messages: they often carry credentials.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests

from stones.base import Done, Failed, MonitorResult, Pending, RetryableError, Stone, StoneContext, TerminalError

CONTROL_KEYS = frozenset(
    {
        "url", "method", "body", "headers", "timeout",
        "statusUrl", "statusField", "successValues", "failureValues",
    }
)
DEFAULT_SUCCESS = ("success", "done", "completed")
DEFAULT_FAILURE = ("failed", "error")
EXCERPT_CHARS = 200
# Client errors that are about timing, not about the request itself.
RETRYABLE_4XX = frozenset({408, 425, 429})

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    """Dotted path into nested dicts (and lists by index); ``_MISSING`` when absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _safe_url(url: str) -> str:
    """The URL without query string or user info, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _body_json(resp: requests.Response) -> dict[str, Any]:
    if not resp.content:
        return {}
    try:
        data = resp.json()
    except ValueError:
        return {"text": resp.text[: 64 * 1024]}
    # Outputs must be an object; keep other JSON values under one key.
    return data if isinstance(data, dict) else {"json": data}


def _excerpt(resp: requests.Response) -> str:
    text = " ".join(resp.text.split())
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


def _values(params: dict[str, Any], key: str, default: tuple[str, ...]) -> list[Any]:
    raw = params.get(key, list(default))
    if isinstance(raw, str | int | float | bool):
        raw = [raw]
    if not isinstance(raw, list):
        raise TerminalError(f"HttpStone: params.{key} must be a list")
    return raw


def _matches(value: Any, candidates: list[Any]) -> bool:
    # Strings compare case-insensitively: "DONE" and "done" are the same outcome.
    if isinstance(value, str):
        return value.lower() in {c.lower() for c in candidates if isinstance(c, str)}
    return any(value == c and type(value) is type(c) for c in candidates)


class _Request:
    """Validated params of one task."""

    def __init__(self, params: dict[str, Any]):
        url = params.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise TerminalError(f"HttpStone: params.url must be an http(s) URL, got {url!r}")
        self.url = url
        method = params.get("method", "POST")
        if not isinstance(method, str) or not method.isalpha():
            raise TerminalError(f"HttpStone: params.method must be an HTTP method, got {method!r}")
        self.method = method.upper()
        headers = params.get("headers")
        headers = {} if headers is None else headers
        if not isinstance(headers, dict):
            raise TerminalError("HttpStone: params.headers must be an object")
        self.headers = {str(k): str(v) for k, v in headers.items()}
        timeout = params.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise TerminalError(f"HttpStone: params.timeout must be a positive number, got {timeout!r}")
        self.timeout = float(timeout)
        if "body" in params:
            self.body: Any = params["body"]
        elif self.method in ("GET", "HEAD"):
            self.body = None
        else:
            self.body = {k: v for k, v in params.items() if k not in CONTROL_KEYS}
        status_url = params.get("statusUrl")
        if status_url is not None and (not isinstance(status_url, str) or not status_url):
            raise TerminalError("HttpStone: params.statusUrl must be a non-empty string")
        self.status_url: str | None = status_url
        status_field = params.get("statusField", "status")
        if not isinstance(status_field, str) or not status_field:
            raise TerminalError("HttpStone: params.statusField must be a non-empty string")
        self.status_field = status_field
        self.success = _values(params, "successValues", DEFAULT_SUCCESS)
        self.failure = _values(params, "failureValues", DEFAULT_FAILURE)

    def send(self, method: str, url: str, headers: dict[str, str], body: Any = None) -> requests.Response:
        """One request; transport failures become Retryable/TerminalError, statuses are the caller's."""
        try:
            return requests.request(method, url, headers=headers, json=body, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = f"HttpStone: {method} {_safe_url(url)} failed: {type(exc).__name__}"
            raise RetryableError(reason) from exc
        except requests.RequestException as exc:
            raise TerminalError(f"HttpStone: {method} {_safe_url(url)} failed: {exc}") from exc

    def resolve_status_url(self, response: dict[str, Any]) -> str | None:
        if self.status_url is None:
            return None
        template = self.status_url
        whole = _PLACEHOLDER.fullmatch(template)

        def fill(match: re.Match[str]) -> str:
            value = _lookup(response, match.group(1).strip())
            if value is _MISSING or value is None:
                raise TerminalError(
                    f"HttpStone: statusUrl placeholder {{{match.group(1)}}} not found in the start response"
                )
            # A field that is the whole template may be a full URL; otherwise it is a path piece.
            return str(value) if whole else quote(str(value), safe="")

        return urljoin(self.url, _PLACEHOLDER.sub(fill, template))


def _check_status(method: str, url: str, resp: requests.Response) -> None:
    code = resp.status_code
    if code < 400:
        return
    message = f"HttpStone: {method} {_safe_url(url)} returned {code}: {_excerpt(resp)}"
    if code >= 500 or code in RETRYABLE_4XX:
        raise RetryableError(message, code=str(code))
    raise TerminalError(message, code=str(code))


class HttpStone(Stone):
    """Sends one request (with ``Idempotency-Key``), then polls ``statusUrl`` if given."""

    name = "HttpStone"
    monitor_interval_s = 2.0

    def start(self, ctx: StoneContext) -> dict[str, Any]:
        req = _Request(ctx.params)
        headers = {"Accept": "application/json", **req.headers}
        if ctx.idempotency_key:
            headers["Idempotency-Key"] = ctx.idempotency_key
        ctx.log.info("HttpStone: %s %s", req.method, _safe_url(req.url))
        resp = req.send(req.method, req.url, headers, req.body)
        _check_status(req.method, req.url, resp)
        response = _body_json(resp)
        return {"response": response, "statusUrl": req.resolve_status_url(response)}

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        response = ctx.state.get("response") or {}
        status_url = ctx.state.get("statusUrl")
        if not status_url:
            return Done(dict(response))
        req = _Request(ctx.params)
        headers = {"Accept": "application/json", **req.headers}
        try:
            resp = req.send("GET", status_url, headers)
            _check_status("GET", status_url, resp)
        except RetryableError as exc:
            # A status endpoint blip is not the job failing: poll again; the deadline bounds this.
            ctx.log.warning("%s", exc.reason)
            return Pending(progress=f"status check failed: {exc.code or 'unreachable'}")
        status = _body_json(resp)
        value = _lookup(status, req.status_field)
        if value is _MISSING:
            return Pending(progress=None)
        if _matches(value, req.success):
            return Done(status)
        if _matches(value, req.failure):
            return Failed(f"status {req.status_field}={value!r} at {_safe_url(status_url)}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Pending(progress=value)
        return Pending(progress=None if value is None else str(value))
