"""The lifecycle shared by the throw-away servers of local runs and tests.

``EmbeddedRedis`` (redis_server) and ``MotoServer`` (moto_server) each run a server as a plain
child process on 127.0.0.1; ``LocalServer`` holds everything they do alike, so a subclass only
says what differs: its command line, how to tell it is ready, its URL and its error class.

A child never outlives us: explicit ``stop()``, an atexit hook over every running server and,
on Linux, a parent-death signal set before exec.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from orchestrator.errors import OrchestratorError

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port of ``HOST`` that is free now."""
    # Racy by nature (the port is free now, not necessarily at bind time): start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
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


class LocalServer:
    """A server child process on ``HOST``, logging to ``<data_dir>/<log_name>-<port>.log``.

    Use as a context manager, or call ``start()`` / ``stop()``. Every running instance is
    also stopped by an atexit hook, and on Linux dies with its parent process. Subclasses set
    the class attributes below and implement ``_command``, ``_probe``, ``_url`` and
    ``_unreachable``.
    """

    label: ClassVar[str]  # the process, in error messages ("redis-server")
    log_name: ClassVar[str]  # the log file's prefix
    probe_name: ClassVar[str]  # what "ready" means, in the startup timeout's message ("PING")
    error: ClassVar[type[OrchestratorError]]
    # _probe's timeouts: short while polling our own child, longer for a configured server.
    ready_timeout: ClassVar[float]
    ensure_timeout: ClassVar[float]

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port: int | None = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    # -- what a subclass says ---------------------------------------------------------------

    def _command(self) -> list[str]:
        """The child's argv, for ``self.port``."""
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        """The child's whole environment; None inherits ours."""
        return None

    @staticmethod
    def _probe(url: str, timeout: float) -> str | None:
        """None when the server at ``url`` answers within ``timeout`` seconds, else why not."""
        raise NotImplementedError

    def _url(self, port: int) -> str:
        raise NotImplementedError

    @staticmethod
    def _unreachable(url: str, error: str) -> str:
        """The message for a configured ``url`` that does not answer (``error``: why)."""
        raise NotImplementedError

    # -- the shared lifecycle ---------------------------------------------------------------

    @classmethod
    def ensure(cls, url: str | None, data_dir: str | os.PathLike[str]) -> tuple[str, Self | None]:
        """The URL to use, and the server started for it (None if ``url`` is configured).

        ``url`` None: start a server (the caller stops it). ``url`` given: it must answer, else
        ``cls.error``; a configured server is never silently replaced.
        """
        if url is None:
            server = cls(data_dir).start()
            return server.url, server
        error = cls._probe(url, cls.ensure_timeout)
        if error is not None:
            raise cls.error(cls._unreachable(url, error))
        return url, None

    @property
    def url(self) -> str:
        if self.port is None:
            raise self.error(f"{type(self).__name__} is not started")
        return self._url(self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Another process may grab an auto-picked port between probe and bind: try again.
        attempts_left = 1 if self._fixed_port else 3
        while True:
            attempts_left -= 1
            if not self._fixed_port:
                self.port = free_port()
            error = self._spawn_and_wait()
            if error is None:
                _RUNNING.add(self)
                return self
            if "already in use" not in error or attempts_left == 0:
                raise self.error(error)

    def _spawn_and_wait(self) -> str | None:
        """Start the child and wait until it is ready: None, or why it is not (child gone)."""
        assert self.port is not None
        self.log_path = self.data_dir / f"{self.log_name}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                # Own session: a Ctrl-C meant for the supervisor must not kill the server before
                # the processes that use it have shut down; stop() signals the whole group.
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                return f"{self.label} exited with code {code} at startup:\n{self.log_tail()}"
            if self._probe(self.url, self.ready_timeout) is None:
                return None
            if time.monotonic() > deadline:
                self._terminate()
                return (
                    f"{self.label} on port {self.port} did not answer {self.probe_name} within "
                    f"{self.startup_timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of the server's log, indented for an error message."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text) or "(empty log)"

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        # The child leads its own process group: signal the group so nothing it spawned
        # survives. Safe while the child is unreaped, as its pid (= pgid) cannot be reused.
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _terminate(self) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
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

    def __enter__(self) -> Self:
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
        return f"<{type(self).__name__} port={self.port} {state}>"


_RUNNING: set[LocalServer] = set()


def stop_all(kind: type[LocalServer] = LocalServer) -> None:
    """Stop every running server of class ``kind`` (at exit: all of them)."""
    for server in [s for s in _RUNNING if isinstance(s, kind)]:
        server.stop()


atexit.register(stop_all)
