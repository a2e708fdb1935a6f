"""ShellStone: runs a shell command detached from the worker.

The command's output and exit code go to files in a work directory
``<ORCH_VAR_DIR or ./var>/shell/<idempotency key>/``, so any worker process on the host (or
sharing that directory) can monitor, cancel or clean it up, and the worker that started it may
exit meanwhile.

Work directory files: ``started`` (launch marker), ``pid`` (process group id), ``stdout``,
``stderr``, ``rc`` (exit code, written last and atomically), ``cancelled``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from stones.base import Done, Failed, MonitorResult, Pending, RetryableError, Stone, StoneContext, TerminalError

OUTPUT_CAP = 64 * 1024

# The outer sh backgrounds the job and exits at once: the job is re-parented, so it outlives
# the worker and no zombie is left behind in it. The command and the directory are passed as
# positional arguments, never pasted into the script, so no quoting can break.
_LAUNCHER = (
    '( /bin/sh -c "$1" >"$2/stdout" 2>"$2/stderr" </dev/null; '
    'echo $? >"$2/rc.tmp"; mv "$2/rc.tmp" "$2/rc" ) >/dev/null 2>&1 </dev/null &'
)

_SAFE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]{0,127}")


def shell_root() -> Path:
    """Read at call time (not import time) so tests and deployments can point it elsewhere."""
    return (Path(os.environ.get("ORCH_VAR_DIR", "var")) / "shell").resolve()


def _dir_name(key: str) -> str:
    if _SAFE_KEY.fullmatch(key):
        return key
    # Keys with "/", ".." or odd characters must not escape the shell root; the hash keeps
    # two keys that clean up to the same text apart.
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", key)[:64]
    return f"{cleaned}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _workdir(ctx: StoneContext) -> Path:
    saved = ctx.state.get("dir")
    if saved:
        return Path(saved)
    key = ctx.idempotency_key or ctx.task_id
    if not key:
        raise TerminalError("ShellStone: the task has neither an idempotency key nor a task id")
    return shell_root() / _dir_name(key)


def _read_capped(path: Path, tail: bool = False) -> str:
    try:
        with path.open("rb") as f:
            if tail:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - OUTPUT_CAP))
            data = f.read(OUTPUT_CAP)
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def _validate(params: dict[str, Any]) -> tuple[str, str | None, dict[str, str] | None]:
    command = params.get("command")
    if not isinstance(command, str) or not command.strip():
        raise TerminalError("ShellStone: params.command is required and must be a non-empty string")
    cwd = params.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
        raise TerminalError(f"ShellStone: params.cwd {cwd!r} is not an existing directory")
    env = params.get("env")
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(k, str) and k for k in env):
            raise TerminalError("ShellStone: params.env must be an object of variable names to values")
        env = {**os.environ, **{k: "" if v is None else str(v) for k, v in env.items()}}
    return command, cwd, env


def _kill(workdir: Path) -> bool:
    """SIGKILL the command's process group; True when a signal was sent."""
    try:
        pgid = int((workdir / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    if pgid <= 1 or (workdir / "rc").exists():
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ShellStone(Stone):
    """Params: ``command`` (run with ``/bin/sh -c``), optional ``cwd`` (default: the work dir), ``env``."""

    name = "ShellStone"
    monitor_interval_s = 0.5

    def start(self, ctx: StoneContext) -> dict[str, Any]:
        command, cwd, env = _validate(ctx.params)
        workdir = _workdir(ctx)
        workdir.mkdir(parents=True, exist_ok=True)
        state = {"dir": str(workdir)}
        try:
            # O_EXCL makes the marker the launch lock: of two concurrent starts only one runs it.
            fd = os.open(workdir / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            ctx.log.info("ShellStone: %s already started, not launching again", workdir)
            return state
        os.close(fd)
        try:
            launcher = subprocess.Popen(
                ["/bin/sh", "-c", _LAUNCHER, "orch-shell", command, str(workdir)],
                cwd=cwd or workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                # Own process group (id = the launcher's pid) so cancel can kill it all at once.
                start_new_session=True,
            )
        except OSError as exc:
            # Nothing runs: drop the marker so a retry launches it.
            (workdir / "started").unlink(missing_ok=True)
            raise RetryableError(f"ShellStone: could not launch /bin/sh: {exc}") from exc
        tmp = workdir / "pid.tmp"
        tmp.write_text(str(launcher.pid))
        tmp.replace(workdir / "pid")
        # Returns as soon as the job is in the background.
        launcher.wait()
        return state

    def monitor(self, ctx: StoneContext) -> MonitorResult:
        workdir = _workdir(ctx)
        rc_file = workdir / "rc"
        if not rc_file.exists():
            if (workdir / "cancelled").exists():
                return Failed("cancelled")
            if not (workdir / "started").exists():
                return Failed(f"ShellStone: work directory {workdir} is missing or was never started")
            return Pending(progress="running")
        try:
            code = int(rc_file.read_text().strip())
        except ValueError:
            return Failed(f"ShellStone: unreadable exit code in {rc_file}")
        if code == 0:
            return Done(
                {
                    "exitCode": 0,
                    "stdout": _read_capped(workdir / "stdout"),
                    "stderr": _read_capped(workdir / "stderr"),
                }
            )
        lines = [line for line in _read_capped(workdir / "stderr", tail=True).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "(no stderr)"
        return Failed(f"command exited with {code}: {last}")

    def cancel(self, ctx: StoneContext) -> None:
        workdir = _workdir(ctx)
        if not workdir.is_dir():
            return
        if _kill(workdir):
            (workdir / "cancelled").touch()

    def rollback(self, ctx: StoneContext) -> None:
        self._remove(ctx)

    def delete(self, ctx: StoneContext) -> None:
        self._remove(ctx)

    def _remove(self, ctx: StoneContext) -> None:
        workdir = _workdir(ctx)
        if workdir.parent.name != "shell":
            # State is ours, but a directory tree is not deleted on trust alone.
            raise TerminalError(f"ShellStone: refusing to remove {workdir}: not a shell work directory")
        if workdir.is_dir():
            _kill(workdir)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(workdir)
