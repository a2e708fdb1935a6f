"""Registry and the built-in stones (except HttpStone, see test_http_stone.py)."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import time
import types
from pathlib import Path

import pytest

from stones import registry
from stones.base import Done, Failed, Pending, Stone, StoneContext, TerminalError
from stones.noop import NoopStone
from stones.shell import ShellStone
from stones.sleep import SleepStone


def make_ctx(params: dict | None = None, key: str = "task-1:1", state: dict | None = None) -> StoneContext:
    return StoneContext(
        task_id="task-1",
        process_instance_id="proc-1",
        name="step",
        namespace=None,
        params=params or {},
        idempotency_key=key,
        state=state or {},
    )


# --- registry ---------------------------------------------------------------------------------------


class ThirdPartyStone(Stone):
    name = "ThirdPartyStone"


class FakeNoop(Stone):
    name = "NoopStone"  # clashes with the built-in


@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("fake_stone_plugin")
    module.ThirdPartyStone = ThirdPartyStone  # type: ignore[attr-defined]
    module.FakeNoop = FakeNoop  # type: ignore[attr-defined]
    module.not_a_stone = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_stone_plugin", module)
    return "fake_stone_plugin"


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, plugin_module: str):
    def install(*specs: tuple[str, str]) -> list[str]:
        groups_asked: list[str] = []
        eps = [importlib.metadata.EntryPoint(n, v, registry.ENTRY_POINT_GROUP) for n, v in specs]

        def entry_points(**kwargs):
            groups_asked.append(kwargs.get("group"))
            return [ep for ep in eps if ep.group == kwargs.get("group")]

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        return groups_asked

    yield install
    registry.load_stones(reload=True)  # drop the fake plugins from the cache for later tests


def test_builtin_stones_are_keyed_by_name():
    builtins = registry.builtin_stones()
    assert set(builtins) == {"NoopStone", "SleepStone", "ShellStone", "HttpStone", "MachineStone", "StackStone"}
    for name, cls in builtins.items():
        assert issubclass(cls, Stone) and cls.name == name


def test_load_stones_adds_entry_point_stones(fake_entry_points, plugin_module):
    asked = fake_entry_points(("ThirdPartyStone", f"{plugin_module}:ThirdPartyStone"))
    stones = registry.load_stones(reload=True)
    assert asked == ["orchestrator.stones"]
    assert stones["ThirdPartyStone"] is ThirdPartyStone
    assert registry.get_stone("ThirdPartyStone") is ThirdPartyStone
    assert registry.get_stone("NoopStone") is NoopStone


def test_broken_and_clashing_entry_points_are_logged_and_skipped(fake_entry_points, plugin_module, caplog):
    fake_entry_points(
        ("Broken", "no_such_module_for_stones_test:Thing"),
        ("NotAStone", f"{plugin_module}:not_a_stone"),
        ("NoopStone", f"{plugin_module}:FakeNoop"),
        ("ThirdPartyStone", f"{plugin_module}:ThirdPartyStone"),
    )
    with caplog.at_level(logging.WARNING, logger="stones.registry"):
        stones = registry.load_stones(reload=True)
    assert stones["NoopStone"] is NoopStone  # the built-in wins
    assert stones["ThirdPartyStone"] is ThirdPartyStone  # a broken neighbour does not hide it
    assert "Broken" not in stones and "NotAStone" not in stones
    text = caplog.text
    assert "no_such_module_for_stones_test" in text
    assert "not a Stone subclass" in text
    assert "clashes with a built-in" in text


def test_load_stones_is_cached(fake_entry_points, plugin_module):
    asked = fake_entry_points(("ThirdPartyStone", f"{plugin_module}:ThirdPartyStone"))
    registry.load_stones(reload=True)
    first = registry.load_stones()
    registry.get_stone("NoopStone")
    assert len(asked) == 1
    first["Intruder"] = Stone  # callers get a copy
    assert "Intruder" not in registry.load_stones()


def test_get_stone_unknown_lists_known_stones():
    with pytest.raises(KeyError) as info:
        registry.get_stone("NoSuchStone")
    message = str(info.value)
    assert "NoSuchStone" in message
    assert "HttpStone, MachineStone, NoopStone, ShellStone, SleepStone, StackStone" in message


# --- NoopStone ---------------------------------------------------------------------------------------


def test_noop_done_with_echoed_outputs():
    stone = NoopStone()
    ctx = make_ctx({"outputs": {"ip": "10.0.0.1", "n": 2}})
    assert stone.start(ctx) is None
    assert stone.monitor(ctx) == Done({"stone": "NoopStone", "ip": "10.0.0.1", "n": 2})
    assert stone.mock(ctx) == {"stone": "NoopStone", "ip": "10.0.0.1", "n": 2}
    assert NoopStone.has_mock()


def test_noop_without_outputs_and_bad_outputs():
    assert NoopStone().monitor(make_ctx()) == Done({"stone": "NoopStone"})
    with pytest.raises(TerminalError, match="outputs"):
        NoopStone().monitor(make_ctx({"outputs": ["not", "a", "dict"]}))


# --- SleepStone --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sleep_pending_until_time_passes():
    clock = FakeClock()
    stone = SleepStone(clock=clock)
    ctx = make_ctx({"duration": 10})
    ctx.state = stone.start(ctx)
    assert ctx.state == {"until": 1010.0, "duration": 10.0}
    assert stone.monitor(ctx) == Pending(progress=0)
    clock.now = 1002.5
    assert stone.monitor(ctx) == Pending(progress=25)
    clock.now = 1009.999
    assert stone.monitor(ctx) == Pending(progress=99)
    clock.now = 1010.0
    assert stone.monitor(ctx) == Done({"slept": 10.0})
    assert SleepStone.monitor_interval_s <= 1


def test_sleep_duplicate_start_keeps_first_deadline():
    clock = FakeClock()
    stone = SleepStone(clock=clock)
    ctx = make_ctx({"duration": 5})
    ctx.state = stone.start(ctx)
    clock.now += 3
    assert stone.start(ctx) == {"until": 1005.0, "duration": 5.0}
    # A fresh instance (another worker) sees the same state.
    assert SleepStone(clock=clock).monitor(ctx) == Pending(progress=60)


def test_sleep_default_duration_fail_and_mock():
    clock = FakeClock()
    stone = SleepStone(clock=clock)
    ctx = make_ctx({"fail": True})
    ctx.state = stone.start(ctx)
    assert ctx.state["duration"] == 1.0
    clock.now += 1
    assert stone.monitor(ctx) == Failed("asked to fail")
    assert stone.mock(make_ctx({"duration": 0.25})) == {"slept": 0.25}


def test_sleep_never_blocks(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("SleepStone slept inside an event"))
    stone = SleepStone()
    ctx = make_ctx({"duration": 3600})
    ctx.state = stone.start(ctx)
    assert isinstance(stone.monitor(ctx), Pending)


@pytest.mark.parametrize("duration", ["soon", -1, None, True])
def test_sleep_bad_duration(duration):
    with pytest.raises(TerminalError, match="duration"):
        SleepStone().start(make_ctx({"duration": duration}))


# --- ShellStone --------------------------------------------------------------------------------------


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORCH_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def wait_result(ctx: StoneContext, deadline_s: float = 10.0):
    """Polls like the worker would, each time with a fresh stone instance."""
    end = time.monotonic() + deadline_s
    while True:
        result = ShellStone().monitor(ctx)
        if not isinstance(result, Pending):
            return result
        assert time.monotonic() < end, "shell command did not finish in time"
        time.sleep(0.01)


def test_shell_success(var_dir):
    ctx = make_ctx({"command": "echo hello; echo oops >&2; echo \"$GREETING\" from $(basename \"$PWD\")",
                    "env": {"GREETING": "hi"}})
    ctx.state = ShellStone().start(ctx)
    workdir = Path(ctx.state["dir"])
    assert workdir == var_dir.resolve() / "shell" / "task-1:1"
    result = wait_result(ctx)
    assert result == Done({"exitCode": 0, "stdout": "hello\nhi from task-1:1\n", "stderr": "oops\n"})


def test_shell_nonzero_exit(var_dir):
    ctx = make_ctx({"command": "echo first >&2; echo 'disk is full' >&2; exit 3"})
    ctx.state = ShellStone().start(ctx)
    result = wait_result(ctx)
    assert isinstance(result, Failed)
    assert result.reason == "command exited with 3: disk is full"


def test_shell_runs_detached_and_monitor_from_fresh_instance(var_dir, tmp_path):
    gate = tmp_path / "go"
    ctx = make_ctx({"command": f"while [ ! -e '{gate}' ]; do sleep 0.01; done; echo released",
                    "cwd": str(tmp_path)})
    started = time.monotonic()
    ctx.state = ShellStone().start(ctx)
    assert time.monotonic() - started < 5  # start did not wait for the command
    assert ShellStone().monitor(ctx) == Pending(progress="running")
    gate.touch()
    assert wait_result(ctx) == Done({"exitCode": 0, "stdout": "released\n", "stderr": ""})


def test_shell_double_start_launches_once(var_dir, tmp_path):
    counter = tmp_path / "count"
    ctx = make_ctx({"command": f"echo run >> '{counter}'"})
    first = ShellStone().start(ctx)
    second = ShellStone().start(make_ctx({"command": f"echo run >> '{counter}'"}))
    assert first == second
    ctx.state = first
    assert isinstance(wait_result(ctx), Done)
    assert counter.read_text() == "run\n"


def test_shell_output_is_capped(var_dir):
    ctx = make_ctx({"command": "head -c 200000 /dev/zero | tr '\\0' x"})
    ctx.state = ShellStone().start(ctx)
    result = wait_result(ctx)
    assert isinstance(result, Done)
    assert len(result.outputs["stdout"]) == 64 * 1024


def test_shell_rollback_and_delete_remove_workdir(var_dir):
    ctx = make_ctx({"command": "true"})
    ctx.state = ShellStone().start(ctx)
    assert isinstance(wait_result(ctx), Done)
    workdir = Path(ctx.state["dir"])
    assert workdir.is_dir()
    ShellStone().rollback(ctx)
    assert not workdir.exists()
    ShellStone().rollback(ctx)  # already gone is fine
    ShellStone().delete(ctx)


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process of the group exists (PID 1 may not reap orphans here)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_shell_cancel_kills_the_process_group(var_dir):
    ctx = make_ctx({"command": "sleep 30"})
    ctx.state = ShellStone().start(ctx)
    pgid = int((Path(ctx.state["dir"]) / "pid").read_text())
    assert _group_alive(pgid)
    ShellStone().cancel(ctx)
    end = time.monotonic() + 5
    while _group_alive(pgid):
        assert time.monotonic() < end, "cancel left the command running"
        time.sleep(0.01)
    assert ShellStone().monitor(ctx) == Failed("cancelled")
    ShellStone().delete(ctx)
    assert not Path(ctx.state["dir"]).exists()


@pytest.mark.parametrize("params", [{}, {"command": ""}, {"command": "   "}, {"command": ["ls"]}])
def test_shell_requires_a_command(var_dir, params):
    with pytest.raises(TerminalError, match="command"):
        ShellStone().start(make_ctx(params))
    assert not (var_dir / "shell").exists()


def test_shell_odd_keys_stay_inside_the_shell_dir(var_dir):
    ctx = make_ctx({"command": "true"}, key="../../etc/x")
    ctx.state = ShellStone().start(ctx)
    workdir = Path(ctx.state["dir"])
    assert workdir.parent == var_dir.resolve() / "shell"
    assert isinstance(wait_result(ctx), Done)


def test_a_models_endpoint_url_needs_the_operators_consent(monkeypatch):
    from stones.aws import aws_endpoint
    from stones.base import TerminalError

    monkeypatch.delenv("ORCH_AWS_ALLOW_ENDPOINT_PARAM", raising=False)
    monkeypatch.setenv("ORCH_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    assert aws_endpoint({}) == "http://127.0.0.1:5000"
    with pytest.raises(TerminalError, match="not allowed"):
        aws_endpoint({"endpointUrl": "http://attacker.example"})
    monkeypatch.setenv("ORCH_AWS_ALLOW_ENDPOINT_PARAM", "1")
    assert aws_endpoint({"endpointUrl": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"
