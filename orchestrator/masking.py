"""Secrets in variables and params are masked wherever they are shown (API, logs, Celery reprs)."""

from __future__ import annotations

import re
from typing import Any

MASK = "******"
SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|credential|private[_-]?key|access[_-]?key|api[_-]?key|auth)", re.I)


def is_secret(name: str) -> bool:
    return bool(SECRET_KEY.search(name))


def mask(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret(k) and v not in (None, "") else mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value
