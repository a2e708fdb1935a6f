"""The transition tables: what a report may do to a task, and a process."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.states import (
    PROCESS_SETTLED,
    PROCESS_TRANSITIONS,
    TASK_DONE,
    TASK_FAILED,
    TASK_TRANSITIONS,
    ProcessStatus,
    TaskStatus,
    can_move_process,
    can_transition,
)

SEED_STATUSES = """produce.success produce.failed start.begin start.failed start.success monitor.begin
monitor.success monitor.failed rollback.begin rollback.success rollback.failed delete.begin delete.success
delete.failed cancel.begin cancel.success cancel.failed canceled mock.begin mock.success mock.passed
mock.failed""".split()

# The forward path of a normal run, in order.
FORWARD = [None, "produce.success", "start.begin", "start.success", "monitor.begin", "monitor.success"]


def test_statuses_are_exactly_the_seeds_table():
    assert sorted(s.value for s in TaskStatus) == sorted(SEED_STATUSES)


def test_every_status_has_a_row():
    assert set(TASK_TRANSITIONS) == {None, *TaskStatus}


def test_forward_path_and_skips_are_allowed():
    for i, j in itertools.combinations(range(len(FORWARD)), 2):
        assert can_transition(FORWARD[i], FORWARD[j]), (FORWARD[i], FORWARD[j])


def test_no_report_moves_a_task_backwards_on_the_forward_path():
    for i, j in itertools.combinations(range(1, len(FORWARD)), 2):
        assert not can_transition(FORWARD[j], FORWARD[i]), (FORWARD[j], FORWARD[i])


@pytest.mark.parametrize("status", [s for s in TaskStatus if s != TaskStatus.MONITOR_BEGIN])
def test_a_duplicate_is_a_no_op(status):
    assert not can_transition(status, status)


def test_monitor_begin_repeats_to_carry_progress():
    assert can_transition("monitor.begin", "monitor.begin")


@pytest.mark.parametrize("final", sorted(TASK_DONE | TASK_FAILED))
def test_a_finished_task_never_starts_again(final):
    for status in ("start.begin", "start.success", "monitor.begin", "monitor.success", "produce.success"):
        assert not can_transition(final, status)


def test_done_and_failed_do_not_overlap():
    assert not TASK_DONE & TASK_FAILED
    assert not can_transition("monitor.success", "monitor.failed")
    assert not can_transition("monitor.failed", "monitor.success")


def test_unknown_status_is_refused():
    with pytest.raises(ValueError):
        can_transition("start.begin", "start.maybe")


def test_process_table_is_complete_and_final_states_do_not_run_again():
    assert set(PROCESS_TRANSITIONS) == set(ProcessStatus)
    for settled in PROCESS_SETTLED:
        assert not can_move_process(settled, ProcessStatus.RUNNING)
    assert can_move_process("running", "success")
    assert can_move_process("running", "failed")
    assert not can_move_process("success", "failed")
