"""A local moto server: a fake AWS endpoint for tests and ``make run``.

The AWS stones talk to whatever ``ORCH_AWS_ENDPOINT_URL`` names; locally that is a
``python -m moto.server`` child started here, on a free port of 127.0.0.1, with all state in
memory (``reset()`` empties it). Like the embedded Redis, a configured server is never
silently replaced: ``ensure_moto`` raises when a given URL does not answer.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from orchestrator.config import VAR_DIR
from orchestrator.errors import OrchestratorError
from orchestrator.redis_server import _free_port, child_preexec

DEFAULT_DATA_DIR = VAR_DIR / "moto"
_HOST = "127.0.0.1"
# The dashboard: static, cheap, and only moto serves it (data.json would dump every model).
_PROBE_PATH = "/moto-api/"


class MotoServerError(OrchestratorError):
    """moto is configured but not reachable, or the local server would not start."""

    code = "moto_unavailable"


def _probe_error(url: str, timeout: float) -> str | None:
    """None when ``url`` answers HTTP (any status below 500), else why not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + _PROBE_PATH, timeout=timeout) as resp:
            resp.read(1)
        return None
    except urllib.error.HTTPError as exc:
        # Another AWS emulator may not serve the moto API: any sane HTTP answer is "up".
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def is_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when the server at ``url`` answers HTTP within ``timeout`` seconds."""
    return _probe_error(url, timeout) is None


def reset(url: str, timeout: float = 10.0) -> None:
    """Forget every resource the moto server at ``url`` holds."""
    req = urllib.request.Request(url.rstrip("/") + "/moto-api/reset", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise MotoServerError(f"moto reset at {url} failed: {exc}") from exc


class MotoServer:
    """A throw-away ``moto.server`` on 127.0.0.1.

    Use as a context manager, or call ``start()`` / ``stop()``. Every running instance is
    also stopped by an atexit hook, and on Linux dies with its parent process. ``env`` is
    added to the child's environment (e.g. ``MOTO_ENABLE_AMI_VALIDATION=true``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port: int | None = port
        self._fixed_port = port is not None
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise MotoServerError("MotoServer is not started")
        return f"http://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> MotoServer:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Another process may grab an auto-picked port between probe and bind: try again.
        attempts_left = 1 if self._fixed_port else 3
        while True:
            attempts_left -= 1
            if not self._fixed_port:
                self.port = _free_port()
            error = self._spawn_and_wait()
            if error is None:
                _RUNNING.add(self)
                return self
            if "already in use" not in error or attempts_left == 0:
                raise MotoServerError(error)

    def _spawn_and_wait(self) -> str | None:
        assert self.port is not None
        self.log_path = self.data_dir / f"moto-{self.port}.log"
        args = [sys.executable, "-m", "moto.server", "-H", _HOST, "-p", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                # Own session: a Ctrl-C meant for the supervisor must not kill moto before the
                # workers that use it have shut down; stop() signals the whole group.
                start_new_session=True,
                preexec_fn=child_preexec(),
            )
        deadline = time.monotonic() + self.startup_timeout
        url = self.url
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                return f"moto server exited with code {code} at startup:\n{self.log_tail()}"
            if is_reachable(url, timeout=0.5):
                return None
            if time.monotonic() > deadline:
                self._terminate()
                return (
                    f"moto server on port {self.port} did not answer HTTP within "
                    f"{self.startup_timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        reset(self.url)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text) or "(empty log)"

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
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

    def __enter__(self) -> MotoServer:
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
        return f"<MotoServer port={self.port} {state}>"


_RUNNING: set[MotoServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def ensure_moto(
    url: str | None, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR
) -> tuple[str, MotoServer | None]:
    """The moto URL to use, and the server started for it (None if configured).

    ``url`` None: start a local server (the caller stops it). ``url`` given: it must answer,
    else ``MotoServerError``; a configured endpoint is never silently replaced.
    """
    if url is None:
        server = MotoServer(data_dir).start()
        return server.url, server
    error = _probe_error(url, timeout=2.0)
    if error is not None:
        raise MotoServerError(
            f"AWS endpoint {url} is not reachable ({error}). Start it, fix ORCH_AWS_ENDPOINT_URL, "
            "or unset it to run a local moto server."
        )
    return url, None
