"""The local stack in one foreground process: what ``make run`` (``orchestrator run``) starts.

It runs, as child processes of the same Python: the API, the engine, one worker per stone
(concurrency 1, so each stone's queue is visibly served by its own process) and Flower.
Without ``ORCH_REDIS_URL`` it first starts an embedded Redis and hands its URL to them.
Every child line is printed prefixed by the child's name. Ctrl-C (or SIGTERM) stops them
all; a child that dies on its own stops the whole stack with a non-zero exit code, because
a half-running stack only hides the failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

from orchestrator.config import VAR_DIR, Settings
from orchestrator.moto_server import MotoServer, MotoServerError, ensure_moto
from orchestrator.redis_server import (
    EmbeddedRedis,
    RedisServerError,
    child_preexec,
    ensure_redis,
    mask_url,
)

__all__ = ["mask_url", "run_stack", "stone_names"]

# Seconds children get between SIGTERM and SIGKILL (a Celery warm shutdown finishes its job).
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.2
_COLORS = ("36", "33", "35", "32", "34", "96", "93", "95", "92", "94")


@dataclass
class _Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class _Console:
    """Serialises lines from several threads onto one stream, each with a name prefix."""

    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    width: int = 8
    color: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, name: str, text: str, color: str | None = None) -> None:
        prefix = f"{name:<{self.width}} |"
        if self.color and color:
            prefix = f"\033[{color}m{prefix}\033[0m"
        with self.lock:
            try:
                self.stream.write(f"{prefix} {text}\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed terminal must not stop the pipes from being drained

    def say(self, text: str) -> None:
        self.line("devstack", text, "1")

    def shout(self, text: str) -> None:
        self.line("devstack", f"!!! {text}", "1;31")


def stone_names() -> list[str]:
    """Names of the built-in stones, from ``stones.registry.load_stones()``."""
    # Imported here: stones are plug-ins, and the supervisor must not need them to import.
    from stones.registry import load_stones

    loaded: Any = load_stones()
    items: Iterable[Any] = loaded.keys() if isinstance(loaded, Mapping) else loaded
    return [item if isinstance(item, str) else item.name for item in items]


def _commands(stones: list[str], with_flower: bool) -> list[_Child]:
    cli = [sys.executable, "-m", "orchestrator.cli"]
    children = [_Child("api", [*cli, "api"]), _Child("engine", [*cli, "engine"])]
    children += [
        _Child(f"w:{name}", [*cli, "worker", "--stones", name, "--concurrency", "1"]) for name in stones
    ]
    if with_flower:
        children.append(_Child("flower", [*cli, "flower"]))
    return children


def _settings_env(settings: Settings) -> dict[str, str]:
    """ORCH_* variables for the settings that differ from the defaults.

    Children read their settings from the environment; exporting only the differences
    keeps defaults computed in one place (e.g. the SQLite path under ORCH_VAR_DIR).
    """
    defaults = Settings.from_env({})
    return {
        f"ORCH_{f.name.upper()}": str(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if getattr(settings, f.name) != getattr(defaults, f.name)
    }


def _public_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _banner(console: _Console, settings: Settings, stones: list[str], flower: bool, embedded: bool,
            aws_note: str = "") -> None:
    redis_note = f"  (embedded, data dir {VAR_DIR / 'redis'})" if embedded else ""
    flower_url = f"http://{_public_host(settings.api_host)}:{settings.flower_port}" if flower else "off"
    for text in (
        "Stone orchestrator: local stack",
        f"  API       http://{_public_host(settings.api_host)}:{settings.api_port}",
        f"  Flower    {flower_url}",
        f"  Redis     {mask_url(settings.redis_url)}{redis_note}",
        f"  Database  {mask_url(settings.database_url)}",
        f"  Stones    {', '.join(stones) or '(none: no workers)'}",
        f"  AWS       {aws_note}",
        "  Ctrl-C stops everything.",
    ):
        console.say(text)


def _pump(child: _Child, console: _Console, color: str) -> None:
    assert child.process is not None and child.process.stdout is not None
    for raw in iter(child.process.stdout.readline, b""):
        console.line(child.name, raw.decode("utf-8", "replace").rstrip("\r\n"), color)
    child.process.stdout.close()


def _signal_group(child: _Child, sig: int) -> None:
    """Signal the child's whole process group (it leads one: start_new_session)."""
    if child.process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)


def _stop_children(children: list[_Child], console: _Console, force: threading.Event) -> None:
    # SIGTERM to the leader only: a Celery worker then does a warm shutdown of its pool;
    # signalling the pool processes directly would kill the jobs they are running.
    for child in children:
        if child.alive():
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(c.alive() for c in children) and time.monotonic() < deadline and not force.is_set():
        time.sleep(0.1)
    for child in children:
        if child.alive():
            console.shout(f"{child.name} did not stop within {STOP_TIMEOUT_S:g}s: SIGKILL")
        # Also reaps what a leader left behind in its group (pool processes, grandchildren).
        _signal_group(child, signal.SIGKILL)
        if child.process is not None:
            child.process.wait()
    for child in children:
        if child.reader is not None:
            child.reader.join(timeout=2.0)


def run_stack(
    settings: Settings | None = None,
    stones: list[str] | None = None,
    with_flower: bool = True,
) -> int:
    """Run api, engine, a worker per stone and Flower in the foreground until Ctrl-C.

    Returns 0 after a requested stop (SIGINT/SIGTERM/SIGHUP), non-zero when a child died on
    its own or the stack could not start.
    """
    console = _Console(color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    stop = threading.Event()
    force = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            force.set()  # a second Ctrl-C: do not wait for graceful shutdowns
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_signal)

    embedded: EmbeddedRedis | None = None
    moto: MotoServer | None = None
    children: list[_Child] = []
    try:
        # Decide the Redis before anything else: every child needs its URL.
        configured = os.environ.get("ORCH_REDIS_URL") or None
        if configured is None and settings is not None and settings.redis_url != Settings.redis_url:
            configured = settings.redis_url  # an explicit, non-default choice of the caller
        try:
            redis_url, embedded = ensure_redis(configured, VAR_DIR / "redis")
        except RedisServerError as exc:
            console.shout(str(exc))
            return 1
        settings = settings or Settings.from_env()
        settings = dataclasses.replace(settings, redis_url=redis_url)

        if stones is None:
            try:
                stones = stone_names()
            except Exception as exc:  # a broken plug-in must say so, not just traceback
                console.shout(f"cannot load the built-in stones: {type(exc).__name__}: {exc}")
                return 1

        env = {**os.environ, **_settings_env(settings), "ORCH_REDIS_URL": redis_url}
        # The cloud stones talk to a local moto server unless the operator points them at AWS
        # (ORCH_AWS_REAL=1) or at an endpoint of their own (ORCH_AWS_ENDPOINT_URL).
        aws_note = "real AWS (ORCH_AWS_REAL=1)"
        if os.environ.get("ORCH_AWS_REAL") not in ("1", "true", "yes"):
            try:
                aws_url, moto = ensure_moto(os.environ.get("ORCH_AWS_ENDPOINT_URL") or None, VAR_DIR / "moto")
            except MotoServerError as exc:
                console.shout(str(exc))
                return 1
            env["ORCH_AWS_ENDPOINT_URL"] = aws_url
            aws_note = f"{aws_url}  ({'local moto server' if moto else 'configured endpoint'})"
        env["PYTHONUNBUFFERED"] = "1"  # child lines reach us as they are written
        children = _commands(stones, with_flower)
        console.width = max(len(c.name) for c in children + [_Child("devstack", [])])
        _banner(console, settings, stones, with_flower, embedded is not None, aws_note)

        for child in children:
            if stop.is_set():
                break
            child.process = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: the terminal's Ctrl-C reaches only us, and we stop the
                # children in order (then Redis) instead of all dying at once.
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        for i, child in enumerate(children):
            if child.process is not None:
                color = _COLORS[i % len(_COLORS)]
                child.reader = threading.Thread(
                    target=_pump, args=(child, console, color), name=f"devstack-{child.name}", daemon=True
                )
                child.reader.start()

        exit_code = 0
        while not stop.wait(_POLL_S):
            dead = next((c for c in children if c.process is not None and not c.alive()), None)
            if dead is not None:
                assert dead.process is not None
                console.shout(
                    f"{dead.name} exited unexpectedly with code {dead.process.returncode}: "
                    "stopping the whole stack"
                )
                exit_code = 1
                break
        if exit_code == 0:
            console.say("stopping (Ctrl-C again to kill at once)")
        return exit_code
    finally:
        _stop_children(children, console, force)
        if embedded is not None:
            embedded.stop()
        if moto is not None:
            moto.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if children:
            console.say("stopped")
