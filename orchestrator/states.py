"""Statuses of tasks and processes, and the only transitions allowed between them.

Task statuses are exactly the first seed's table. A freshly created task row has no
status (``None``): it is in the outbox and not yet handed to the broker.

Status reports arrive through Redis and may be late, duplicated or reordered. The engine
applies a report only when ``(current, reported)`` is in ``TASK_TRANSITIONS``; anything
else is a no-op, so a report can never move a task backwards. Forward skips are allowed
(``produce.success -> start.success``) because a lost ``start.begin`` must not block a task.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PRODUCE_SUCCESS = "produce.success"
    PRODUCE_FAILED = "produce.failed"
    START_BEGIN = "start.begin"
    START_SUCCESS = "start.success"
    START_FAILED = "start.failed"
    MONITOR_BEGIN = "monitor.begin"
    MONITOR_SUCCESS = "monitor.success"
    MONITOR_FAILED = "monitor.failed"
    ROLLBACK_BEGIN = "rollback.begin"
    ROLLBACK_SUCCESS = "rollback.success"
    ROLLBACK_FAILED = "rollback.failed"
    DELETE_BEGIN = "delete.begin"
    DELETE_SUCCESS = "delete.success"
    DELETE_FAILED = "delete.failed"
    CANCEL_BEGIN = "cancel.begin"
    CANCEL_SUCCESS = "cancel.success"
    CANCEL_FAILED = "cancel.failed"
    CANCELED = "canceled"
    MOCK_BEGIN = "mock.begin"
    MOCK_SUCCESS = "mock.success"
    MOCK_PASSED = "mock.passed"
    MOCK_FAILED = "mock.failed"

    @property
    def event(self) -> str:
        return self.value.split(".", 1)[0]


S = TaskStatus
_START = {S.START_BEGIN, S.START_SUCCESS, S.START_FAILED}
_MONITOR = {S.MONITOR_BEGIN, S.MONITOR_SUCCESS, S.MONITOR_FAILED}
_MOCK = {S.MOCK_BEGIN, S.MOCK_SUCCESS, S.MOCK_PASSED, S.MOCK_FAILED}
_ROLLBACK = {S.ROLLBACK_BEGIN, S.ROLLBACK_SUCCESS, S.ROLLBACK_FAILED}
_DELETE = {S.DELETE_BEGIN, S.DELETE_SUCCESS, S.DELETE_FAILED}
_CANCEL = {S.CANCEL_BEGIN, S.CANCEL_SUCCESS, S.CANCEL_FAILED}

# current status -> statuses a report may move it to. Self-loops are listed explicitly:
# ``monitor.begin -> monitor.begin`` carries progress; other duplicates are no-ops.
# A task row runs one kind of event (``start`` then ``monitor``, or ``mock``, or, in a
# derived process, ``rollback``/``delete``/``cancel``): ``ROW_EVENTS`` says which reports
# belong to it. A new attempt (retry, reRun) is not a report: the engine resets the row.
_ANY_FIRST = ({S.PRODUCE_SUCCESS, S.PRODUCE_FAILED, S.CANCELED}
              | _START | _MONITOR | _MOCK | _ROLLBACK | _DELETE | _CANCEL)
TASK_TRANSITIONS: dict[TaskStatus | None, frozenset[TaskStatus]] = {
    None: frozenset(_ANY_FIRST),
    S.PRODUCE_SUCCESS: frozenset(_ANY_FIRST - {S.PRODUCE_SUCCESS, S.PRODUCE_FAILED}),
    S.PRODUCE_FAILED: frozenset(),
    S.START_BEGIN: frozenset({S.START_SUCCESS, S.START_FAILED, S.CANCELED} | _MONITOR),
    S.START_SUCCESS: frozenset({S.CANCELED} | _MONITOR),
    S.MONITOR_BEGIN: frozenset({S.MONITOR_BEGIN, S.MONITOR_SUCCESS, S.MONITOR_FAILED, S.CANCELED}),
    S.MONITOR_SUCCESS: frozenset(),
    S.START_FAILED: frozenset(),
    S.MONITOR_FAILED: frozenset(),
    S.MOCK_BEGIN: frozenset({S.MOCK_SUCCESS, S.MOCK_PASSED, S.MOCK_FAILED, S.CANCELED}),
    S.MOCK_SUCCESS: frozenset(),
    S.MOCK_PASSED: frozenset(),
    S.MOCK_FAILED: frozenset(),
    S.ROLLBACK_BEGIN: frozenset({S.ROLLBACK_SUCCESS, S.ROLLBACK_FAILED}),
    S.ROLLBACK_SUCCESS: frozenset(),
    S.ROLLBACK_FAILED: frozenset(),
    S.DELETE_BEGIN: frozenset({S.DELETE_SUCCESS, S.DELETE_FAILED}),
    S.DELETE_SUCCESS: frozenset(),
    S.DELETE_FAILED: frozenset(),
    S.CANCEL_BEGIN: frozenset({S.CANCEL_SUCCESS, S.CANCEL_FAILED}),
    S.CANCEL_SUCCESS: frozenset(),
    S.CANCEL_FAILED: frozenset(),
    S.CANCELED: frozenset(),
}

# The row's event -> the events whose reports it accepts (``produce`` and ``canceled`` always).
ROW_EVENTS: dict[str, frozenset[str]] = {
    "start": frozenset({"start", "monitor"}),
    "mock": frozenset({"mock"}),
    "rollback": frozenset({"rollback"}),
    "delete": frozenset({"delete"}),
    "cancel": frozenset({"cancel"}),
}

# Final statuses: the task's attempt is over, successfully or not.
TASK_DONE = frozenset({S.MONITOR_SUCCESS, S.MOCK_SUCCESS, S.MOCK_PASSED,
                       S.ROLLBACK_SUCCESS, S.DELETE_SUCCESS, S.CANCEL_SUCCESS})
TASK_FAILED = frozenset({S.PRODUCE_FAILED, S.START_FAILED, S.MONITOR_FAILED, S.MOCK_FAILED,
                         S.ROLLBACK_FAILED, S.DELETE_FAILED, S.CANCEL_FAILED})
TASK_ENDED = TASK_DONE | TASK_FAILED | {S.CANCELED}
# A forward task in one of these is running on a worker right now.
TASK_IN_FLIGHT = frozenset({S.START_BEGIN, S.START_SUCCESS, S.MONITOR_BEGIN, S.MOCK_BEGIN})


def accepts(row_event: str, status: TaskStatus | str) -> bool:
    """Whether a row running ``row_event`` takes reports of ``status`` at all."""
    event = TaskStatus(status).event
    return event in ("produce", "canceled") or event in ROW_EVENTS[row_event]


def can_transition(current: TaskStatus | str | None, new: TaskStatus | str) -> bool:
    """True when a report of ``new`` may be applied to a task in ``current``."""
    cur = TaskStatus(current) if current is not None else None
    return TaskStatus(new) in TASK_TRANSITIONS[cur]


class ProcessStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    DEBUG = "debug"
    ROLLBACKING = "rollbacking"
    ROLLBACKED = "rollbacked"
    ROLLBACK_FAILED = "rollback_failed"
    CANCELING = "canceling"
    CANCELED = "canceled"
    DELETING = "deleting"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"


P = ProcessStatus
# A process runs ``running -> success``. On a task failure it goes ``failed`` (or ``debug``
# when started with debug: reRun goes back to ``running``, resume to ``failed``); once no
# task is in flight a rollback process starts: ``rollbacking -> rollbacked | rollback_failed``.
# Cancel: ``canceling -> canceled``. Delete, from any finished state: ``deleting -> deleted |
# delete_failed``. Derived (rollback, cancel, delete) processes run ``running -> success | failed``.
PROCESS_TRANSITIONS: dict[ProcessStatus, frozenset[ProcessStatus]] = {
    P.RUNNING: frozenset({P.SUCCESS, P.FAILED, P.DEBUG, P.CANCELING}),
    P.DEBUG: frozenset({P.RUNNING, P.FAILED, P.CANCELING}),
    P.FAILED: frozenset({P.ROLLBACKING}),
    P.ROLLBACKING: frozenset({P.ROLLBACKED, P.ROLLBACK_FAILED}),
    P.ROLLBACKED: frozenset({P.DELETING}),
    P.ROLLBACK_FAILED: frozenset({P.DELETING}),
    P.CANCELING: frozenset({P.CANCELED}),
    P.CANCELED: frozenset({P.DELETING}),
    P.SUCCESS: frozenset({P.DELETING}),
    P.DELETING: frozenset({P.DELETED, P.DELETE_FAILED}),
    P.DELETED: frozenset(),
    P.DELETE_FAILED: frozenset({P.DELETING}),
}

# Nothing more happens to a main process in these by itself.
PROCESS_SETTLED = frozenset({P.SUCCESS, P.ROLLBACKED, P.ROLLBACK_FAILED, P.CANCELED, P.DELETED, P.DELETE_FAILED})


def process_sources(new: ProcessStatus | str) -> frozenset[ProcessStatus]:
    """The statuses a process may move to ``new`` from, read off ``PROCESS_TRANSITIONS``."""
    return frozenset(s for s, targets in PROCESS_TRANSITIONS.items() if ProcessStatus(new) in targets)


def can_move_process(current: ProcessStatus | str, new: ProcessStatus | str) -> bool:
    return ProcessStatus(new) in PROCESS_TRANSITIONS[ProcessStatus(current)]
