"""A stack of real orchestrator processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

SETTLED = ("success", "rollbacked", "rollback_failed", "debug", "canceled", "deleted", "delete_failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=self.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def spawn(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], env=self.env,
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(name)
        os.killpg(p.pid, sig)
        p.wait(15)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
                print(f"{name} had to be killed")

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-3000:]
                pytest.fail(f"{name} exited with {p.returncode}:\n{tail}")

    def start(self, key: str, variables: dict, name: str = "e2e") -> dict:
        r = requests.post(f"{self.base}/process", json={"key": key, "processName": name, "variables": variables},
                          timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, pid: str, timeout: float = 60, until=SETTLED) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = requests.get(f"{self.base}/process/{pid}", timeout=10).json()
            if proc["processStatus"] in until:
                return proc
            self.check_alive()
            time.sleep(0.1)
        pytest.fail(f"process {pid} still running after {timeout}s: {self.tasks(pid)}")

    def tasks(self, pid: str) -> list[dict]:
        return requests.get(f"{self.base}/task", params={"processInstanceId": pid}, timeout=10).json()




class sqlite_db:
    """Same shape as ``scratch_postgres()``: a context manager giving a database URL."""

    def __init__(self, tmp: Path):
        self.url = f"sqlite:///{tmp / 'orchestrator.db'}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc) -> None:
        return None


def wait_http(s: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s.check_alive()
        try:
            if requests.get(f"{s.base}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    pytest.fail("API did not come up")
