"""The stone contract.

A stone is a class with a ``name`` and up to six lifecycle events. The orchestrator's
worker calls them, one event per Celery job, and reports every step through Redis:

- ``start(ctx)``: begin the work. Must be safe to call twice for the same task: pass
  ``ctx.idempotency_key`` to the provider. Returns a state dict handed to later events.
- ``monitor(ctx)``: one short poll; never sleeps. Returns ``Done``, ``Pending`` or ``Failed``.
  The worker runs the first poll right after ``start`` and re-enqueues ``Pending`` polls
  with a countdown of ``monitor_interval`` seconds, until ``monitor_deadline`` passes.
- ``rollback(ctx)`` / ``delete(ctx)``: undo / clean up what ``start`` made; tolerate
  "already gone".
- ``cancel(ctx)``: stop work in flight.
- ``mock(ctx)``: predict the outputs without side effects. A stone that does not override
  it gives ``mock.passed``.

Raise ``RetryableError`` for a failure worth another attempt (the orchestrator's retry
policy decides how many), ``TerminalError`` for one that is not; any other exception
counts as terminal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar


class StoneError(Exception):
    """A stone's failure; ``code`` lets a BPMN error boundary event catch it."""

    def __init__(self, reason: str, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class RetryableError(StoneError):
    """Transient failure (throttling, timeout): the event may be attempted again."""


class TerminalError(StoneError):
    """Permanent failure (bad parameters, quota): retrying will not help."""


@dataclass(frozen=True)
class Done:
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    progress: str | int | float | None = None
    # Replaces the task's state for the next poll when given.
    state: dict[str, Any] | None = None


@dataclass(frozen=True)
class Failed:
    reason: str
    code: str | None = None


MonitorResult = Done | Pending | Failed


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    jitter: bool = True


@dataclass
class StoneContext:
    """Everything an event may use. Built by the worker from the job message."""

    task_id: str
    process_instance_id: str
    name: str
    namespace: str | None
    params: dict[str, Any]
    attempt: int = 1
    # Deterministic per task and attempt: the same task started twice gives the same key.
    idempotency_key: str = ""
    # What ``start`` returned (and ``Pending.state`` replaced), for the later events.
    state: dict[str, Any] = field(default_factory=dict)
    # Monitor polls done so far for this attempt.
    poll: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("stones"))


class Stone:
    """Base class: subclass it, set ``name`` (defaults to the class name), override events."""

    name: ClassVar[str] = ""
    monitor_interval_s: ClassVar[float] = 1.0
    # Seconds after start when a still-pending monitor becomes ``monitor.failed``.
    monitor_deadline_s: ClassVar[float] = 3600.0
    retry: ClassVar[RetryPolicy] = RetryPolicy()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__

    @classmethod
    def queue(cls) -> str:
        return f"stone.{cls.name}"

    def start(self, ctx: StoneContext) -> dict[str, Any] | None:
        return None

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        return Done()

    def rollback(self, ctx: StoneContext) -> None:
        return None

    def delete(self, ctx: StoneContext) -> None:
        return None

    def cancel(self, ctx: StoneContext) -> None:
        return None

    def mock(self, ctx: StoneContext) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def has_mock(cls) -> bool:
        return cls.mock is not Stone.mock
