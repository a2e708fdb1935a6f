"""SleepStone: waits ``duration`` seconds without ever blocking a worker.

start records the wake-up time; each monitor poll only compares it with the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stones.base import Done, Failed, MonitorResult, Pending, Stone, StoneContext, TerminalError

_TRUE_STRINGS = frozenset({"true", "yes", "1", "on"})


def _duration(params: dict[str, Any]) -> float:
    raw = params.get("duration", 1)
    if isinstance(raw, bool):
        raise TerminalError(f"SleepStone: duration must be a number of seconds, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TerminalError(f"SleepStone: duration must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise TerminalError(f"SleepStone: duration must be finite and >= 0, got {raw!r}")
    return value


def _truthy(value: Any) -> bool:
    # Params may come from BPMN text fields, where "true" is a string.
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value)


class SleepStone(Stone):
    """Params: ``duration`` (seconds, default 1), ``fail`` (monitor returns Failed once the time is up)."""

    name = "SleepStone"
    monitor_interval_s = 0.5

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # Wall clock, not monotonic: the wake-up time is read by other worker processes.
        self._clock = clock

    def start(self, ctx: StoneContext) -> dict[str, Any]:
        if "until" in ctx.state:
            # Duplicate start of the same task: keep the first wake-up time.
            return dict(ctx.state)
        duration = _duration(ctx.params)
        return {"until": self._clock() + duration, "duration": duration}

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        try:
            until = float(ctx.state["until"])
            duration = float(ctx.state.get("duration", 0.0))
        except (KeyError, TypeError, ValueError):
            raise TerminalError("SleepStone: monitor needs the state returned by start") from None
        remaining = until - self._clock()
        if remaining > 0:
            done_pct = int(100 * (1 - remaining / duration)) if duration > 0 else 0
            return Pending(progress=min(99, max(0, done_pct)))
        if _truthy(ctx.params.get("fail", False)):
            return Failed("asked to fail")
        return Done({"slept": duration})

    def mock(self, ctx: StoneContext) -> dict[str, Any]:
        return {"slept": _duration(ctx.params)}
