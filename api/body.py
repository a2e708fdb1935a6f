"""Reading request bodies strictly: the right content type, valid JSON, an object."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from orchestrator.errors import InvalidInput, UnsupportedMediaType

MAX_DEPTH = 32


def json_object() -> dict[str, Any]:
    if not request.mimetype or not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {request.mimetype or 'none'!r}")
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    check_json(body)
    return body


def check_json(value: Any, depth: int = 0) -> None:
    """Refuse what a database or a log would choke on: deep nesting, NUL, lone surrogates."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            check_json(v, depth + 1)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidInput("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("lone surrogate characters are not allowed") from exc
