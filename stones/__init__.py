"""Stones: executor plug-ins. A stone knows its cloud API and nothing of Flask, SQL or Celery."""

from __future__ import annotations

from typing import Any

from stones.base import (
    Done,
    Failed,
    Pending,
    RetryableError,
    RetryPolicy,
    Stone,
    StoneContext,
    StoneError,
    TerminalError,
)

__all__ = [
    "Done",
    "Failed",
    "HttpStone",
    "MachineStone",
    "NoopStone",
    "Pending",
    "RetryPolicy",
    "RetryableError",
    "ShellStone",
    "SleepStone",
    "StackStone",
    "Stone",
    "StoneContext",
    "StoneError",
    "TerminalError",
    "builtin_stones",
    "get_stone",
    "load_stones",
]

# Loaded on first use: ``import stones.base`` should not pull in requests, boto3 or subprocess.
_LAZY = {
    "HttpStone": "stones.http",
    "MachineStone": "stones.machine",
    "NoopStone": "stones.noop",
    "ShellStone": "stones.shell",
    "SleepStone": "stones.sleep",
    "StackStone": "stones.stack",
    "builtin_stones": "stones.registry",
    "get_stone": "stones.registry",
    "load_stones": "stones.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stones' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
