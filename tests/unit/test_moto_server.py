"""The local moto server: real ``moto.server`` processes, started and stopped for each test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.moto_server import MotoServer, MotoServerError, ensure_moto, is_reachable

ROOT = Path(__file__).resolve().parents[2]


def _moto_pids(port: int) -> list[int]:
    """Live (non-zombie) moto.server processes listening on ``port``, found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if b"moto.server" in argv and str(port).encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_no_moto(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _moto_pids(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _ec2(url: str) -> Any:
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_start_answer_reset_stop(tmp_path: Path) -> None:
    # ``env`` reaches the server: no AMI catalogue (fast) and image ids validated.
    amis = tmp_path / "amis.json"
    amis.write_text("[]")
    env = {"MOTO_AMIS_PATH": str(amis), "MOTO_ENABLE_AMI_VALIDATION": "true"}
    with MotoServer(tmp_path, env=env) as server:
        assert server.running and is_reachable(server.url)
        port = server.port
        assert port is not None and _moto_pids(port) == [server.process.pid]  # type: ignore[union-attr]
        ec2 = _ec2(server.url)
        with pytest.raises(Exception, match="InvalidAMIID.NotFound"):
            ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)
        vpc_id = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        assert vpc_id in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
        server.reset()
        assert vpc_id not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    assert not server.running and not is_reachable(server.url)
    assert _wait_no_moto(port)
    assert not list(tmp_path.glob("moto-*.log"))  # a clean stop leaves no log behind
    server.stop()  # idempotent


def test_fixed_port_in_use_fails_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MotoServer(tmp_path, port=port)
        with pytest.raises(MotoServerError) as info:
            server.start()
    message = str(info.value)
    assert "exited with code" in message and "in use" in message and "  | " in message
    assert not server.running and _wait_no_moto(port)


def test_startup_timeout_kills_the_child(tmp_path: Path) -> None:
    server = MotoServer(tmp_path, startup_timeout=0.0)
    with pytest.raises(MotoServerError, match="did not answer HTTP within 0s"):
        server.start()
    assert server.port is not None and not server.running
    assert _wait_no_moto(server.port)


def _run_script(body: str) -> subprocess.Popen[str]:
    script = textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_atexit_hook_stops_a_forgotten_server(tmp_path: Path) -> None:
    proc = _run_script(f"""
        from orchestrator.moto_server import MotoServer
        server = MotoServer({str(tmp_path)!r}).start()
        print(server.port, flush=True)
    """)  # exits without stop()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert _wait_no_moto(int(out.split()[0]))


def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    proc = _run_script(f"""
        import time
        from orchestrator.moto_server import MotoServer
        server = MotoServer({str(tmp_path)!r}).start()
        print(server.port, flush=True)
        time.sleep(60)
    """)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        assert _moto_pids(port)
        proc.send_signal(signal.SIGKILL)  # no atexit, no stop(): only PR_SET_PDEATHSIG is left
        proc.wait(10)
        assert _wait_no_moto(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_ensure_moto(tmp_path: Path) -> None:
    url, server = ensure_moto(None, tmp_path)
    try:
        assert server is not None and url == server.url and is_reachable(url)
        assert ensure_moto(url, tmp_path) == (url, None)  # a configured server is used as is
    finally:
        assert server is not None
        server.stop()
    with pytest.raises(MotoServerError, match="not reachable"):
        ensure_moto(url, tmp_path)  # never silently replaced by a new one
