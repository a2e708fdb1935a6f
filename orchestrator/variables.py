"""Typed process variables of the Activiti-style API: ``{name, type, value}``.

Types as the second seed names them: string, short, integer, long, double, boolean, date
(ISO 8601), plus json for objects and lists. A value of the wrong type is refused (400);
the declared type is kept with the process so reads give it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.errors import InvalidInput

_RANGES = {"short": 2**15, "integer": 2**31, "long": 2**63}
TYPES = ("string", "short", "integer", "long", "double", "boolean", "date", "json")
OPERATIONS = ("equals", "notEquals", "greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals", "like")
QUERY_TYPES = ("string", "long", "integer", "short", "double", "boolean", "date")


def infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**31) <= value < 2**31 else "long"
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
        raise InvalidInput(f"variable {name!r}: {value!r} is not an ISO 8601 date") from exc


def coerce(name: str, kind: str | None, value: Any) -> tuple[str, Any]:
    """Check ``value`` against ``kind`` (inferred when missing); returns the type and the value to store."""
    if kind is None:
        return infer_type(value), value
    if kind not in TYPES:
        raise InvalidInput(f"variable {name!r}: unknown type {kind!r} (one of {', '.join(TYPES)})")
    if value is None:
        return kind, None
    if kind == "string":
        ok = isinstance(value, str)
    elif kind in _RANGES:
        ok = isinstance(value, int) and not isinstance(value, bool) and -_RANGES[kind] <= value < _RANGES[kind]
    elif kind == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        parse_date(value, name)
        ok = True
    else:
        ok = True
    if not ok:
        raise InvalidInput(f"variable {name!r}: {value!r} is not a valid {kind}")
    return kind, value


def parse_items(items: Any, *, allow_missing_type: bool = True) -> dict[str, tuple[str, Any]]:
    """A list of ``{name, type?, value}`` into ``{name: (type, value)}``; 400 on anything malformed."""
    if not isinstance(items, list):
        raise InvalidInput("variables must be a list of {name, type, value} objects")
    out: dict[str, tuple[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each variable must be an object {name, type, value}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("each variable needs a non-empty string name")
        if name.startswith("__"):
            raise InvalidInput(f"variable name {name!r} is reserved")
        if "value" not in item:
            raise InvalidInput(f"variable {name!r} has no value")
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidInput(f"variable {name!r}: type must be a string")
        if kind is None and not allow_missing_type:
            raise InvalidInput(f"variable {name!r} has no type")
        if name in out:
            raise InvalidInput(f"variable {name!r} is given twice")
        out[name] = coerce(name, kind, item["value"])
    return out


def typed_variables(values: dict[str, Any], types: dict[str, str]) -> list[tuple[str, str, Any]]:
    return [(name, types.get(name) or infer_type(value), value) for name, value in sorted(values.items())]


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
        name, operation = item.get("name"), item.get("operation", "equals")
        if not isinstance(name, str) or not name:
            raise InvalidInput("a variable filter needs a name")
        if operation not in OPERATIONS:
            raise InvalidInput(f"variable filter {name!r}: unknown operation {operation!r} "
                               f"(one of {', '.join(OPERATIONS)})")
        if "value" not in item:
            raise InvalidInput(f"variable filter {name!r} has no value")
        value = item["value"]
        kind = item.get("type") or infer_type(value)
        if kind not in QUERY_TYPES:
            raise InvalidInput(f"variable filter {name!r}: unknown type {kind!r} (one of {', '.join(QUERY_TYPES)})")
        coerce(name, kind, value)
        if operation == "like" and kind != "string":
            raise InvalidInput(f"variable filter {name!r}: like works on strings only")
        if kind == "boolean" and operation not in ("equals", "notEquals"):
            raise InvalidInput(f"variable filter {name!r}: booleans are compared with equals or notEquals")
        return cls(name, operation, kind, value)

    def _key(self, value: Any) -> Any:
        if self.kind == "date":
            return parse_date(value, self.name)
        if self.kind in ("double", "short", "integer", "long"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
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
                pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in wanted)
                return re.fullmatch(pattern, actual, re.S) is not None
            return {"greaterThan": actual > wanted, "greaterThanOrEquals": actual >= wanted,
                    "lessThan": actual < wanted, "lessThanOrEquals": actual <= wanted}[self.operation]
        except (TypeError, InvalidInput):
            return False  # a value of another type never matches
