"""Reading request input strictly: the right content type, valid JSON, an object, ids of the right shape.

Everything here runs before the service is called, so refused input never reaches the database
or the broker.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import request

from orchestrator.errors import InvalidInput, NotFound, UnsupportedMediaType

# Objects and arrays may nest this many levels, the body object itself being level 1.
MAX_DEPTH = 32

# ``processInstanceId`` / ``taskId``: decimal strings of integer keys. 18 digits always fit a signed
# 64-bit column; ASCII only, because ``str.isdigit`` also accepts other scripts' digits and ``²``.
PUBLIC_ID = re.compile(r"[0-9]{1,18}")
PUBLIC_ID_PATTERN = "^[0-9]{1,18}$"
# ``modelId`` / ``deploymentId``: the uuid4 strings the service mints.
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def public_id(value: str, what: str) -> str:
    """A ``processInstanceId`` / ``taskId`` that could exist, else 404 without asking the database."""
    if not PUBLIC_ID.fullmatch(value):
        raise NotFound(f"{what} {value!r} not found")
    return value


def uuid_id(value: str, what: str) -> str:
    """A uuid-shaped id, else 404 without asking the database (PostgreSQL refuses NUL, for one)."""
    if not UUID.fullmatch(value):
        raise NotFound(f"{what} {value!r} not found")
    return value


def json_value() -> Any:
    """The request body: ``application/json`` (UTF-8), any JSON value, checked by ``check_json``."""
    mimetype = request.mimetype
    if not (mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))):
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {mimetype or 'none'!r}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"JSON bodies are UTF-8, not {charset!r}")
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 from werkzeug
    _check_depth(raw)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:  # not expected after _check_depth; never a 500 though
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, and integers over Python's digit limit
        raise InvalidInput(f"malformed JSON body: {exc}") from exc
    check_json(body)
    return body


def json_object() -> dict[str, Any]:
    """The request body, which must be a JSON object (see ``json_value``)."""
    body = json_value()
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return body


# A JSON string; unterminated, it runs to the end (as for the parser), so a match never fails and is
# never retried from a later quote: linear time whatever the input.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _check_depth(raw: bytes) -> None:
    """Refuse deep nesting before parsing: the C parser recurses once per bracket, and where a library
    has raised the recursion limit, a megabyte of ``[`` crashes the process instead of raising."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > MAX_DEPTH:  # stops within MAX_DEPTH + 1 brackets of an attack
            raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"malformed JSON body: {name} is not JSON")


def check_json(value: Any) -> None:
    """Refuse what a database, a log or a JSON reader would choke on: nesting deeper than
    ``MAX_DEPTH``, NUL characters, lone surrogates (``"\\ud800"``), non-finite numbers (``1e999``)."""
    stack: list[tuple[Any, int]] = [(value, 1)]  # iterative: no recursion to exhaust
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput("numbers must be finite")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for k, v in item.items():
                    check_text(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item)


def check_text(text: str) -> None:
    """NUL and lone surrogates: PostgreSQL refuses the first, UTF-8 cannot encode the second."""
    if "\x00" in text:
        raise InvalidInput("NUL characters are not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("lone surrogate characters are not allowed") from exc
