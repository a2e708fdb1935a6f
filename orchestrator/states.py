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
TASK_TRANSITIONS: dict[TaskStatus | None, frozenset[TaskStatus]] = {
    None: frozenset({S.PRODUCE_SUCCESS, S.PRODUCE_FAILED, S.CANCELED} | _START | _MONITOR | _MOCK),
    S.PRODUCE_SUCCESS: frozenset({S.CANCELED} | _START | _MONITOR | _MOCK | _CANCEL),
    S.PRODUCE_FAILED: frozenset({S.CANCELED}),
    S.START_BEGIN: frozenset({S.START_SUCCESS, S.START_FAILED} | _MONITOR | _CANCEL),
    S.START_SUCCESS: frozenset(_MONITOR | _CANCEL | _ROLLBACK | _DELETE),
    S.MONITOR_BEGIN: frozenset({S.MONITOR_BEGIN, S.MONITOR_SUCCESS, S.MONITOR_FAILED} | _CANCEL),
    S.MONITOR_SUCCESS: frozenset(_ROLLBACK | _DELETE),
    S.START_FAILED: frozenset(_ROLLBACK | _DELETE),
    S.MONITOR_FAILED: frozenset(_ROLLBACK | _DELETE),
    S.MOCK_BEGIN: frozenset({S.MOCK_SUCCESS, S.MOCK_PASSED, S.MOCK_FAILED}),
    S.MOCK_SUCCESS: frozenset(),
    S.MOCK_PASSED: frozenset(),
    S.MOCK_FAILED: frozenset(),
    S.ROLLBACK_BEGIN: frozenset({S.ROLLBACK_SUCCESS, S.ROLLBACK_FAILED}),
    S.ROLLBACK_SUCCESS: frozenset(_DELETE),
    S.ROLLBACK_FAILED: frozenset({S.ROLLBACK_BEGIN} | _DELETE),
    S.DELETE_BEGIN: frozenset({S.DELETE_SUCCESS, S.DELETE_FAILED}),
    S.DELETE_SUCCESS: frozenset(),
    S.DELETE_FAILED: frozenset({S.DELETE_BEGIN}),
    S.CANCEL_BEGIN: frozenset({S.CANCEL_SUCCESS, S.CANCEL_FAILED, S.CANCELED}),
    S.CANCEL_SUCCESS: frozenset({S.CANCELED} | _ROLLBACK | _DELETE),
    S.CANCEL_FAILED: frozenset({S.CANCEL_BEGIN, S.CANCELED} | _ROLLBACK | _DELETE),
    S.CANCELED: frozenset(_ROLLBACK | _DELETE),
}

# A report of one of these completes the service task in the workflow.
TASK_DONE = frozenset({S.MONITOR_SUCCESS, S.MOCK_SUCCESS, S.MOCK_PASSED})
# A report of one of these fails the task, and with it the process.
TASK_FAILED = frozenset({S.PRODUCE_FAILED, S.START_FAILED, S.MONITOR_FAILED, S.MOCK_FAILED})
# Statuses after which a task has an ``endTime``.
TASK_ENDED = TASK_DONE | TASK_FAILED | frozenset(
    {S.ROLLBACK_SUCCESS, S.ROLLBACK_FAILED, S.DELETE_SUCCESS, S.DELETE_FAILED, S.CANCELED, S.CANCEL_FAILED}
)


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
# running -> success | failed; a failed process rolls back (failed -> rollbacking -> rollbacked |
# rollback_failed) unless it runs in debug mode, where it waits in ``debug`` for reRun or resume.
PROCESS_TRANSITIONS: dict[ProcessStatus, frozenset[ProcessStatus]] = {
    P.RUNNING: frozenset({P.SUCCESS, P.FAILED, P.DEBUG, P.CANCELING}),
    P.DEBUG: frozenset({P.RUNNING, P.ROLLBACKING, P.FAILED}),
    P.FAILED: frozenset({P.ROLLBACKING, P.DELETING}),
    P.ROLLBACKING: frozenset({P.ROLLBACKED, P.ROLLBACK_FAILED}),
    P.ROLLBACKED: frozenset({P.DELETING}),
    P.ROLLBACK_FAILED: frozenset({P.ROLLBACKING, P.DELETING}),
    P.CANCELING: frozenset({P.CANCELED}),
    P.CANCELED: frozenset({P.DELETING}),
    P.SUCCESS: frozenset({P.DELETING}),
    P.DELETING: frozenset({P.DELETED, P.DELETE_FAILED}),
    P.DELETED: frozenset(),
    P.DELETE_FAILED: frozenset({P.DELETING}),
}

PROCESS_FINAL = frozenset({P.SUCCESS, P.FAILED, P.ROLLBACKED, P.ROLLBACK_FAILED, P.CANCELED, P.DELETED})


def can_move_process(current: ProcessStatus | str, new: ProcessStatus | str) -> bool:
    return ProcessStatus(new) in PROCESS_TRANSITIONS[ProcessStatus(current)]
