"""Typed process variables of the Activiti-style API: ``{name, type, value}``.

Types as the second seed names them: string, short, integer, long, double, boolean, date
(ISO 8601), plus json for objects and lists. A value of the wrong type is refused (400);
the declared type is kept with the process so reads give it back (as long as the value still
fits it: a task's outputs may have replaced the value since).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.engine import check_variables
from orchestrator.errors import InvalidInput

_RANGES = {"short": 2**15, "integer": 2**31, "long": 2**63}
TYPES = ("string", "short", "integer", "long", "double", "boolean", "date", "json")
OPERATIONS = ("equals", "notEquals", "greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals", "like")
QUERY_TYPES = ("string", "long", "integer", "short", "double", "boolean", "date")
MAX_LIKE = 255  # characters of a like pattern
# What JSON Schema's ``\s`` calls blank (the API documents names as ``pattern: \S``); Python's
# ``str.strip()`` would also strip a few control characters that ``\S`` matches.
_BLANK = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
         "\u2028\u2029\u202f\u205f\u3000\ufeff"


def infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        if -_RANGES["integer"] <= value < _RANGES["integer"]:
            return "integer"
        return "long" if -_RANGES["long"] <= value < _RANGES["long"] else "json"  # past 64 bits: a JSON number
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return "json"


def parse_date(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(f"variable {name!r}: a date must be an ISO 8601 string, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"variable {name!r}: {value!r} is not an ISO 8601 date"[:300]) from exc


def coerce(name: str, kind: str | None, value: Any) -> tuple[str, Any]:
    """Check ``value`` against ``kind`` (inferred when missing); returns the type and the value to store."""
    if kind is None:
        return infer_type(value), value
    if kind not in TYPES:
        raise InvalidInput(f"variable {name!r}: unknown type {kind!r} (one of {', '.join(TYPES)})"[:300])
    if value is None:
        return kind, None
    if kind == "string":
        ok = isinstance(value, str)
    elif kind in _RANGES:
        ok = isinstance(value, int) and not isinstance(value, bool) and -_RANGES[kind] <= value < _RANGES[kind]
    elif kind == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any double
                ok = False
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        parse_date(value, name)
        ok = True
    else:
        ok = True
    if not ok:
        raise InvalidInput(f"variable {name!r}: not a valid {kind}: {value!r}"[:300])
    return kind, value


def fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is (still) a value of ``kind``."""
    try:
        return coerce("", kind, value)[1] == value
    except InvalidInput:
        return False


def parse_items(items: Any, *, allow_missing_type: bool = True) -> dict[str, tuple[str, Any]]:
    """A list of ``{name, type?, value}`` into ``{name: (type, value)}``; 400 on anything malformed."""
    if not isinstance(items, list):
        raise InvalidInput("variables must be a list of {name, type, value} objects")
    out: dict[str, tuple[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each variable must be an object {name, type, value}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip(_BLANK):
            raise InvalidInput("each variable needs a non-empty string name")
        if "value" not in item:
            raise InvalidInput(f"variable {name!r} has no value"[:300])
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidInput(f"variable {name!r}: type must be a string"[:300])
        if kind is None and not allow_missing_type:
            raise InvalidInput(f"variable {name!r} has no type"[:300])
        if name in out:
            raise InvalidInput(f"variable {name!r} is given twice"[:300])
        out[name] = coerce(name, kind, item["value"])
    check_variables(out)  # reserved names: the engine's rule
    return out


def typed_variables(values: dict[str, Any], types: dict[str, str]) -> list[tuple[str, str, Any]]:
    """``(name, type, value)`` by name: the declared type while the value fits it, else the value's own."""
    out = []
    for name, value in sorted(values.items()):
        kind = types.get(name)
        out.append((name, kind if kind in TYPES and fits(kind, value) else infer_type(value), value))
    return out


def like(pattern: str, text: str) -> bool:
    """SQL LIKE: ``%`` any text, ``_`` one character, ``\\`` makes the next character literal.

    The pattern is cut at each ``%`` into pieces of fixed length; each piece is found leftmost after the
    one before (the first at the start, the last at the end). No backtracking: where one regular
    expression of ``.*`` groups would backtrack exponentially on crafted input, this stays linear in the
    text for each piece."""
    pieces: list[list[str]] = [[]]  # regular-expression atoms of each piece, one per character
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            pieces[-1].append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            pieces.append([])
        else:
            pieces[-1].append("." if ch == "_" else re.escape(ch))
        i += 1
    compiled = [(re.compile("".join(atoms), re.S), len(atoms)) for atoms in pieces]
    if len(compiled) == 1:
        return compiled[0][1] == len(text) and compiled[0][0].match(text) is not None
    (first, first_len), (last, last_len) = compiled[0], compiled[-1]
    if first.match(text) is None:
        return False
    pos = first_len
    for piece, _ in compiled[1:-1]:
        found = piece.search(text, pos)
        if found is None:
            return False
        pos = found.end()
    end = len(text) - last_len
    return end >= pos and last.match(text, end) is not None


@dataclass(frozen=True)
class VariableFilter:
    name: str
    operation: str
    kind: str
    value: Any

    @classmethod
    def parse(cls, item: Any) -> VariableFilter:
        if not isinstance(item, dict):
            raise InvalidInput("each variable filter must be an object {name, value, operation, type}")
        name = item.get("name")
        operation = item.get("operation")
        if operation is None:
            operation = "equals"
        if not isinstance(name, str) or not name:
            raise InvalidInput("a variable filter needs a name")
        if not isinstance(operation, str) or operation not in OPERATIONS:
            raise InvalidInput(f"variable filter {name!r}: unknown operation {operation!r} "
                               f"(one of {', '.join(OPERATIONS)})"[:300])
        if "value" not in item:
            raise InvalidInput(f"variable filter {name!r} has no value"[:300])
        value = item["value"]
        kind = item.get("type")
        if kind is None:
            kind = infer_type(value)
        if not isinstance(kind, str) or kind not in QUERY_TYPES:
            raise InvalidInput(f"variable filter {name!r}: unknown type {kind!r} (one of "
                               f"{', '.join(QUERY_TYPES)}; without one, the value's own)"[:300])
        coerce(name, kind, value)
        if operation == "like" and kind != "string":
            raise InvalidInput(f"variable filter {name!r}: like works on strings only"[:300])
        if operation == "like" and isinstance(value, str) and len(value) > MAX_LIKE:
            raise InvalidInput(f"variable filter {name!r}: a like pattern is at most {MAX_LIKE} characters"[:300])
        if kind == "boolean" and operation not in ("equals", "notEquals"):
            raise InvalidInput(f"variable filter {name!r}: booleans are compared with equals or notEquals"[:300])
        return cls(name, operation, kind, value)

    def _key(self, value: Any) -> Any:
        if self.kind == "date":
            return parse_date(value, self.name)
        if self.kind in ("double", "short", "integer", "long"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return value  # Python compares integers and floats exactly, whatever their size
        return value

    def matches(self, variables: dict[str, Any]) -> bool:
        if self.name not in variables:
            return False
        try:
            actual, wanted = self._key(variables[self.name]), self._key(self.value)
            if self.kind == "string" and not isinstance(actual, str):
                return False
            if self.operation == "equals":
                return actual == wanted
            if self.operation == "notEquals":
                return actual != wanted
            if self.operation == "like":
                return isinstance(wanted, str) and like(wanted, actual)
            return {"greaterThan": actual > wanted, "greaterThanOrEquals": actual >= wanted,
                    "lessThan": actual < wanted, "lessThanOrEquals": actual <= wanted}[self.operation]
        except (TypeError, InvalidInput):
            return False  # a value of another type never matches
