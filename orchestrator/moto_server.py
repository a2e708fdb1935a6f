"""A local moto server: a fake AWS endpoint for tests and ``make run``.

The AWS stones talk to whatever ``ORCH_AWS_ENDPOINT_URL`` names; locally that is a
``python -m moto.server`` child started here, on a free port of 127.0.0.1, with all state in
memory (``reset()`` empties it). Like the embedded Redis, a configured server is never
silently replaced: ``ensure_moto`` raises when a given URL does not answer.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from orchestrator.config import VAR_DIR
from orchestrator.errors import OrchestratorError
from orchestrator.local_server import HOST, LocalServer, stop_all

DEFAULT_DATA_DIR = VAR_DIR / "moto"
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


class MotoServer(LocalServer):
    """A throw-away ``moto.server`` on 127.0.0.1, all state in memory.

    Started, stopped and guarded as every ``LocalServer``: a context manager, or ``start()`` /
    ``stop()``. ``env`` is added to the child's environment (e.g.
    ``MOTO_ENABLE_AMI_VALIDATION=true``).
    """

    label = "moto server"
    log_name = "moto"
    probe_name = "HTTP"
    error = MotoServerError
    ready_timeout = 0.5
    ensure_timeout = 2.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(data_dir, port, startup_timeout, stop_timeout)
        self.env = dict(env or {})

    def _command(self) -> list[str]:
        assert self.port is not None
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def _env(self) -> dict[str, str]:
        # Unbuffered: the startup error lands in the log before the child exits.
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    @staticmethod
    def _probe(url: str, timeout: float) -> str | None:
        return _probe_error(url, timeout)

    def _url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    @staticmethod
    def _unreachable(url: str, error: str) -> str:
        return (
            f"AWS endpoint {url} is not reachable ({error}). Start it, fix ORCH_AWS_ENDPOINT_URL, "
            "or unset it to run a local moto server."
        )

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        reset(self.url)


def _stop_all() -> None:
    """Stop every running MotoServer (the atexit hook of local_server stops them all)."""
    stop_all(MotoServer)


def ensure_moto(
    url: str | None, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR
) -> tuple[str, MotoServer | None]:
    """The moto URL to use, and the server started for it (None if configured).

    ``url`` None: start a local server (the caller stops it). ``url`` given: it must answer,
    else ``MotoServerError``; a configured endpoint is never silently replaced.
    """
    return MotoServer.ensure(url, data_dir)
