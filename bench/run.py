"""The throughput benchmark: the whole product against a raw Celery chain, alternating rounds.

    python -m bench.run [--processes 1000] [--rounds 2] [--engines 1] [--concurrency CORES]

pipeline round: N processes of ``examples/noop_chain.bpmn`` (five NoopStone tasks) started over
HTTP against a real ``orchestrator api``, advanced by real ``orchestrator engine`` processes, run
by a real ``orchestrator worker``; timed from the first POST until the database says every
process is ``success``.
raw round: the same DAG as N raw Celery chains (``bench/raw_celery.py``) on the same Redis and a
``celery worker`` of the same concurrency; timed from the first ``apply_async`` until the last task
of every chain has incremented a Redis counter.

Every round starts on a fresh database and a flushed Redis DB, with freshly started processes.
Prints a table and writes ``bench/results/latest.json``. A benchmark, not a test: the targets are
printed, never asserted; the command fails only when the run itself fails (a process fails, a
child dies, a timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from orchestrator.models import Process, Task, TaskEvent
from orchestrator.redis_server import EmbeddedRedis, child_preexec, is_reachable, mask_url
from orchestrator.store import normalize_url

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
P, T, E = (m.__table__ for m in (Process, Task, TaskEvent))
RESULTS = ROOT / "bench" / "results" / "latest.json"
MODEL_FILE = ROOT / "examples" / "noop_chain.bpmn"
MODEL_KEY = "noop_chain"
TASKS_PER_PROCESS = 5
MEASURED_NAME = "bench"
WARMUP_NAME = "bench-warmup"
PROBE_NAME = "bench-probe"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
BENCH_DB = "orch_bench"  # the database (or, failing that, the schema) the benchmark owns
POLL_S = 0.05
TARGET_PROCESSES_PER_S = 100.0
TARGET_RATIO = 0.8
STOP_TIMEOUT_S = 10.0


class BenchError(Exception):
    """The run itself failed: a process failed, a child died, a timeout."""


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ProcStat:
    ppid: int
    comm: str
    title: str  # the command line (PostgreSQL backends name their database there)
    ticks: int  # utime + stime
    started: int  # start time since boot: tells a reused pid from the same process


def proc_snapshot() -> dict[int, ProcStat]:
    """Every process of the machine with its CPU time so far (empty off Linux)."""
    out: dict[int, ProcStat] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2:].split()
            title = ""
            if comm == "postgres":
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out[int(entry)] = ProcStat(int(fields[1]), comm, title, int(fields[11]) + int(fields[12]),
                                       int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out


def _descendants(roots: dict[int, str], snap: dict[int, ProcStat]) -> dict[int, str]:
    """pid -> label for the given root pids and all their descendants."""
    kids: dict[int, list[int]] = defaultdict(list)
    for pid, st in snap.items():
        kids[st.ppid].append(pid)
    out: dict[int, str] = {}
    for root, label in roots.items():
        stack = [root]
        while stack:
            pid = stack.pop()
            if pid in out:
                continue
            out[pid] = label
            stack += kids.get(pid, [])
    return out


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine since boot, None off Linux."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Child:
    name: str
    role: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 25) -> str:
        try:
            text_ = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "  | (no log)"
        return "\n".join(f"  | {line}" for line in text_) or "  | (empty log)"


class Children:
    """Subprocesses of one round: each in its own process group, logging to var/bench/<name>.log."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, name: str, role: str, argv: list[str], env: dict[str, str]) -> Child:
        log_path = VAR / f"{name}.log"
        with open(log_path, "wb") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            # Own session: the benchmark stops its children itself (terminate, then kill), even on
            # Ctrl-C; PR_SET_PDEATHSIG (child_preexec) covers the benchmark being killed outright.
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=child_preexec())
        child = Child(name, role, proc, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise BenchError(f"{child.name} (pid {child.process.pid}) exited with code {code}; "
                                 f"{child.log_path}:\n{child.tail()}")

    def roles(self) -> dict[int, str]:
        return {c.process.pid: c.role for c in self.children}

    def stop_all(self) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left after STOP_TIMEOUT_S."""
        alive = [c for c in self.children if c.process.poll() is None]
        for child in alive:
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in alive:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"  {child.name} did not stop within {STOP_TIMEOUT_S:g}s: killing it")
        for child in self.children:
            # The group may outlive its leader (a prefork pool's processes): kill any straggler.
            _signal_group(child.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
        self.children.clear()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_cmd(name: str, argv: list[str], env: dict[str, str], timeout: float = 120.0) -> str:
    """Run a short command to completion, its output in var/bench/<name>.log; fail loudly."""
    log_path = VAR / f"{name}.log"
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, start_new_session=True)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    log_path.write_text(f"$ {' '.join(argv)}\n{out}")
    if proc.returncode != 0:
        tail = "\n".join(f"  | {line}" for line in out.splitlines()[-25:])
        raise BenchError(f"{' '.join(argv[2:])} failed with code {proc.returncode}; {log_path}:\n{tail}")
    return out.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- Redis and database


@dataclass
class RedisTarget:
    url: str
    kind: str  # "ORCH_BENCH_REDIS_URL", "local db 14", "embedded"
    server: Any = None  # an EmbeddedRedis we started

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.flushdb()
        finally:
            client.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def pick_redis() -> RedisTarget:
    configured = os.environ.get("ORCH_BENCH_REDIS_URL")
    if configured:
        if is_reachable(configured, timeout=1.0):
            return RedisTarget(configured, "ORCH_BENCH_REDIS_URL")
        say(f"warning: ORCH_BENCH_REDIS_URL={mask_url(configured)} does not answer; trying {DEFAULT_REDIS_URL}")
    if is_reachable(DEFAULT_REDIS_URL, timeout=1.0):
        return RedisTarget(DEFAULT_REDIS_URL, "local, db 14")
    server = EmbeddedRedis(VAR / "redis").start()
    return RedisTarget(server.url, "embedded (orchestrator.redis_server.EmbeddedRedis)", server)


class Database:
    """A fresh database per round: PostgreSQL database ``orch_bench`` (or schema), else SQLite."""

    def __init__(self, want: str):
        self.kind = "sqlite"
        self.mode = "file"
        self.admin_url: str | None = None
        self.url = ""
        self.where = ""
        if want in ("auto", "postgresql"):
            configured = os.environ.get("ORCH_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
            problem = self._try_postgres(configured)
            if problem is None:
                return
            if want == "postgresql":
                raise BenchError(f"PostgreSQL at {_mask(configured)} is not usable: {problem}")
            say(f"PostgreSQL at {_mask(configured)} not usable ({problem}); using SQLite")
        self.sqlite_path = VAR / "bench.db"
        self.url = f"sqlite:///{self.sqlite_path}"
        self.where = str(self.sqlite_path.relative_to(ROOT))

    def _admin_engine(self) -> Engine:
        assert self.admin_url is not None
        return create_engine(normalize_url(self.admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool,
                             connect_args={"connect_timeout": 3})

    def _try_postgres(self, configured: str) -> str | None:
        try:
            url = make_url(configured)
        except Exception as exc:
            return f"bad URL: {exc}"
        if not url.drivername.startswith("postgres"):
            return f"not a PostgreSQL URL ({url.drivername})"
        # The admin connection must not be to the database it drops.
        admin = url.set(database="postgres") if url.database == BENCH_DB else url
        self.admin_url = admin.render_as_string(hide_password=False)
        try:
            with self._admin_engine().connect() as cx:
                cx.execute(text("SELECT 1"))
                can_create = cx.execute(text(
                    "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")).scalar()
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.kind = "postgresql"
        if can_create:
            self.mode = "database"
            self.url = url.set(database=BENCH_DB).render_as_string(hide_password=False)
            self.where = f"database {BENCH_DB} on {_mask(self.url)}"
        else:
            # A schema of our own in the configured database; never the public schema.
            self.mode = "schema"
            self.url = admin.update_query_dict({"options": f"-csearch_path={BENCH_DB}"}).render_as_string(
                hide_password=False)
            self.where = f"schema {BENCH_DB} in {_mask(self.admin_url)}"
        return None

    def fresh(self) -> str:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.sqlite_path}{suffix}").unlink()
            return self.url
        with self._admin_engine().connect() as cx:
            if self.mode == "database":
                cx.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
                cx.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
            else:
                cx.execute(text(f'DROP SCHEMA IF EXISTS "{BENCH_DB}" CASCADE'))
                cx.execute(text(f'CREATE SCHEMA "{BENCH_DB}"'))
        return self.url

    def reader(self) -> Engine:
        """The benchmark's own connection, reading committed rows (autocommit)."""
        return create_engine(normalize_url(self.url), isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _mask(url: str) -> str:
    return mask_url(url)


# ---------------------------------------------------------------------------- statistics


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50_ms": _r(pct(values, 50)), "p99_ms": _r(pct(values, 99)),
            "max_ms": _r(max(values) if values else None)}


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# ---------------------------------------------------------------------------- rounds


@dataclass
class Config:
    processes: int
    rounds: int
    engines: int
    concurrency: int
    warmup: int
    probe: int
    http_threads: int
    api_threads: int | None
    timeout: float
    log_level: str
    sides: list[str]
    pool: str = "threads"
    raw_pool: str = "prefork"
    raw_concurrency: int = 2


@dataclass
class RoundResult:
    side: str
    index: int
    n: int
    wall_s: float
    publish_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.n / self.wall_s

    @property
    def tasks_per_s(self) -> float:
        return TASKS_PER_PROCESS * self.per_s


class Measure:
    """CPU seconds used over a window by each child role, the benchmark, Redis, PostgreSQL and
    everything else running on the machine (this box may be shared: foreign load shows here)."""

    def __init__(self, children: Children, bench_db: str = BENCH_DB):
        self.children = children
        self.bench_db = bench_db
        self.t0 = time.perf_counter()
        self.snap0 = proc_snapshot()
        self.machine0 = _machine_ticks()

    def _label(self, pid: int, st: ProcStat, ours: dict[int, str]) -> str:
        if pid in ours:
            return ours[pid]
        if st.comm == "redis-server":
            return "redis-server"
        if st.comm == "postgres":
            return "postgres (orch_bench)" if f" {self.bench_db} " in f" {st.title} " else "postgres (other)"
        return f"other: {st.comm.split('/')[0]}"  # kworker/1:3-events -> kworker

    def finish(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        snap1 = proc_snapshot()
        machine1 = _machine_ticks()
        roots = {**self.children.roles(), os.getpid(): "bench (this process)"}  # children first
        ours = _descendants(roots, snap1)
        ticks: dict[str, int] = defaultdict(int)
        for pid, st in snap1.items():
            before = self.snap0.get(pid)
            delta = st.ticks - (before.ticks if before is not None and before.started == st.started else 0)
            if delta > 0:
                ticks[self._label(pid, st, ours)] += delta
        cpu = {k: round(v / _TICK, 2) for k, v in sorted(ticks.items(), key=lambda kv: -kv[1])}
        out: dict[str, Any] = {"window_s": round(wall, 3)}
        if self.machine0 and machine1:
            busy = (machine1[0] - self.machine0[0]) / _TICK
            out["machine_busy_pct"] = round(100.0 * (machine1[0] - self.machine0[0])
                                            / max(1, machine1[1] - self.machine0[1]), 1)
            out["machine_busy_cpu_s"] = round(busy, 2)
            # Processes that ended inside the window (and kernel work) are not in any snapshot.
            cpu["unattributed (exited processes, kernel)"] = round(max(0.0, busy - sum(cpu.values())), 2)
        mine = set(self.children.roles().values()) | {"bench (this process)", "redis-server",
                                                         "postgres (orch_bench)"}
        out["foreign_cpu_s"] = round(sum(v for k, v in cpu.items() if k not in mine), 2)
        out["cpu_s"] = cpu
        return out


def base_env(redis_url: str, db_url: str, log_level: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_BENCH_")}
    env.update(ORCH_DATABASE_URL=db_url, ORCH_REDIS_URL=redis_url, ORCH_VAR_DIR=str(VAR / "orch"),
               ORCH_LOG_LEVEL=log_level, ORCH_API_TOKENS="", PYTHONUNBUFFERED="1",
               BENCH_RAW_REDIS_URL=redis_url)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def wait_until(what: str, done, children: Children, timeout: float, interval: float = POLL_S) -> float:
    """Poll ``done()`` until true; checks the children meanwhile. Returns the seconds it took."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while not done():
        children.check()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - t0


class PipelineRound:
    def __init__(self, cfg: Config, index: int, db: Database, rds: RedisTarget):
        self.cfg, self.index, self.db, self.rds = cfg, index, db, rds
        self.children = Children()
        self.prefix = f"pipeline{index}"
        self.orch = [sys.executable, "-m", "orchestrator.cli"]

    def run(self) -> RoundResult:
        cfg = self.cfg
        try:
            db_url = self.db.fresh()
            self.rds.flush()
            env = base_env(self.rds.url, db_url, cfg.log_level)
            run_cmd(f"{self.prefix}-db-upgrade", [*self.orch, "db", "upgrade"], env)
            run_cmd(f"{self.prefix}-deploy", [*self.orch, "deploy", str(MODEL_FILE), "--key", MODEL_KEY], env)
            port = free_port()
            api_argv = [*self.orch, "api", "--port", str(port)]
            if cfg.api_threads:
                api_argv += ["--threads", str(cfg.api_threads)]
            self.children.start(f"{self.prefix}-api", "api", api_argv, env)
            for e in range(cfg.engines):
                self.children.start(f"{self.prefix}-engine{e + 1}", "engine", [*self.orch, "engine"], env)
            self.children.start(f"{self.prefix}-worker", "worker",
                                [*self.orch, "worker", "--stones", "NoopStone", "--concurrency",
                                 str(cfg.concurrency), "--pool", cfg.pool, "--loglevel", cfg.log_level], env)
            self.base = f"http://127.0.0.1:{port}"
            reader = self.db.reader()
            try:
                with reader.connect() as cx:
                    self.cx = cx
                    return self._measure()
            finally:
                reader.dispose()
        finally:
            self.children.stop_all()

    def _health(self) -> bool:
        try:
            return requests.get(f"{self.base}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def _count(self, status: str = "success") -> int:
        # SELECT count(*) FROM processes WHERE status = 'success'
        return self.cx.execute(select(func.count()).select_from(P).where(P.c.status == status)).scalar_one()

    def _statuses(self) -> dict[str, int]:
        return dict(self.cx.execute(select(P.c.status, func.count()).group_by(P.c.status)).all())

    def _check_failed(self) -> None:
        bad = self.cx.execute(select(P.c.pk, P.c.status, P.c.reason)
                              .where(P.c.status.not_in(("running", "success"))).order_by(P.c.pk).limit(5)).all()
        if bad:
            counts = self._statuses()
            lines = "\n".join(f"  process {pk}: {status}: {reason}" for pk, status, reason in bad)
            raise BenchError(f"processes ended unsuccessfully (statuses {counts}):\n{lines}")

    def _run_batch(self, n: int, name: str, already: int, timeout: float) -> dict[str, Any]:
        """POST n processes from http_threads keep-alive sessions, then wait until all succeeded.

        Timed from the first POST until ``already + n`` processes are ``success`` in the database.
        """
        local = threading.local()
        latencies: list[float] = []
        errors: list[str] = []
        body = {"key": MODEL_KEY, "processName": name, "variables": {}}
        url = f"{self.base}/process"

        def post() -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            t = time.perf_counter()
            try:
                resp = session.post(url, json=body, timeout=60)
            except requests.RequestException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append((time.perf_counter() - t) * 1000.0)
            if resp.status_code != 200:
                errors.append(f"HTTP {resp.status_code}: {resp.text[:300]}")

        target = already + n
        pool = ThreadPoolExecutor(self.cfg.http_threads, thread_name_prefix="bench-http")
        t0 = time.perf_counter()
        try:
            futures = [pool.submit(post) for _ in range(n)]
            posted_at: float | None = None
            last_check = t0
            deadline = t0 + timeout
            while True:
                if errors:
                    raise BenchError(f"{len(errors)} POST /process failed, first: {errors[0]}")
                if posted_at is None and all(f.done() for f in futures):
                    posted_at = time.perf_counter()
                if self._count() >= target:
                    t_end = time.perf_counter()
                    break
                now = time.perf_counter()
                if now - last_check > 1.0:
                    last_check = now
                    self._check_failed()
                    self.children.check()
                if now > deadline:
                    counts = self._statuses()
                    raise BenchError(f"timed out after {timeout:g}s: {len(latencies)}/{n} POSTs answered, "
                                     f"process statuses {counts} (want {target} success)")
                time.sleep(POLL_S)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if errors:
            raise BenchError(f"{len(errors)} POST /process failed, first: {errors[0]}")
        self._check_failed()
        # Every process succeeded, so every POST was answered, at the latest by now.
        return {"wall_s": t_end - t0, "publish_s": (posted_at or t_end) - t0, "post": summary_ms(latencies)}

    def _measure(self) -> RoundResult:
        cfg = self.cfg
        t = wait_until("the API's /health", self._health, self.children, 60.0, 0.1)
        say(f"  api ready in {t:.1f}s")
        if cfg.warmup:
            w = self._run_batch(cfg.warmup, WARMUP_NAME, 0, max(60.0, cfg.timeout))
            say(f"  warm-up: {cfg.warmup} processes in {w['wall_s']:.2f}s (not counted)")
        self.children.check()
        measure = Measure(self.children)
        say(f"  measuring {cfg.processes} processes ...")
        m = self._run_batch(cfg.processes, MEASURED_NAME, cfg.warmup, cfg.timeout)
        cpu = measure.finish()
        result = RoundResult("pipeline", self.index, cfg.processes, m["wall_s"], m["publish_s"])
        result.extra = {"post_latency": m["post"], "cpu": cpu, **self._latencies(MEASURED_NAME)}
        if cfg.probe:
            result.extra["idle"] = self._probe(cfg.probe, cfg.warmup + cfg.processes)
        return result

    def _probe(self, n: int, already: int) -> dict[str, Any]:
        """Latencies without load: n processes one after the other, each waited for."""
        session = requests.Session()
        body = {"key": MODEL_KEY, "processName": PROBE_NAME, "variables": {}}
        for i in range(n):
            resp = session.post(f"{self.base}/process", json=body, timeout=60)
            if resp.status_code != 200:
                raise BenchError(f"probe POST /process: HTTP {resp.status_code}: {resp.text[:300]}")
            target = already + i + 1
            deadline = time.perf_counter() + 60.0
            while self._count() < target:
                if time.perf_counter() > deadline:
                    self._check_failed()
                    self.children.check()
                    raise BenchError(f"probe process {i + 1}/{n} did not succeed within 60s")
                time.sleep(0.005)
        self._check_failed()
        lat = self._latencies(PROBE_NAME)
        lb = lat["latency_breakdown"]
        say(f"  idle probe ({n} processes one at a time): process p50 {lb['process_ms']['p50_ms']} ms, "
            f"dispatch p50 {lat['dispatch_p50_ms']} ms p99 {lat['dispatch_p99_ms']} ms")
        return {"processes": n, "dispatch_p50_ms": lat["dispatch_p50_ms"], "dispatch_p99_ms": lat["dispatch_p99_ms"],
                "latency_breakdown": lb}

    def _latencies(self, name: str) -> dict[str, Any]:
        """Per-task latencies of the processes named ``name``, from the task and task_events tables."""
        # Typed columns (orchestrator.models): datetimes come back as datetimes on SQLite too.
        mine = select(P.c.pk).where(P.c.process_name == name)
        tasks = self.cx.execute(select(T.c.pk, T.c.process_pk, T.c.create_time)
                                .where(T.c.process_pk.in_(mine)).order_by(T.c.process_pk, T.c.pk)).all()
        events = self.cx.execute(select(E.c.task_pk, E.c.status, E.c.at).join(T, T.c.pk == E.c.task_pk)
                                 .where(T.c.process_pk.in_(mine)).order_by(E.c.pk)).all()
        procs = {pk: (start, end) for pk, start, end in self.cx.execute(
            select(P.c.pk, P.c.start_time, P.c.end_time).where(P.c.process_name == name))}
        first_at: dict[tuple[int, str], datetime] = {}
        for task_pk, status, at in events:
            first_at.setdefault((task_pk, status), at)
        by_process: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
        for pk, ppk, created in tasks:
            by_process[ppk].append((pk, created))
        series: dict[str, list[float]] = defaultdict(list)

        def add(name: str, value: float | None) -> None:
            if value is not None:
                series[name].append(value)

        missing_begin = 0
        for ppk, items in by_process.items():
            start, end = procs[ppk]
            add("process_ms", _ms(end, start))
            for i, (tpk, created) in enumerate(items):
                begin = first_at.get((tpk, "start.begin"))
                produced = first_at.get((tpk, "produce.success"))
                done = first_at.get((tpk, "monitor.success"))
                if begin is None:
                    missing_begin += 1
                add("dispatch_ms", _ms(begin, created))
                add("create_to_produced_ms", _ms(produced, created))
                add("produced_to_start_ms", _ms(begin, produced))
                add("start_to_done_ms", _ms(done, begin))
                following = items[i + 1][1] if i + 1 < len(items) else end
                add("done_to_next_ms", _ms(following, done))
        dispatch = series.get("dispatch_ms", [])
        return {
            "tasks": len(tasks), "tasks_without_start_begin": missing_begin,
            "status_histogram": dict(Counter(s for _, s, _ in events)),
            "dispatch_p50_ms": _r(pct(dispatch, 50)), "dispatch_p99_ms": _r(pct(dispatch, 99)),
            "latency_breakdown": {name: summary_ms(values) for name, values in series.items()},
        }


class RawRound:
    def __init__(self, cfg: Config, index: int, rds: RedisTarget):
        self.cfg, self.index, self.rds = cfg, index, rds
        self.children = Children()
        self.prefix = f"raw{index}"

    def run(self) -> RoundResult:
        cfg = self.cfg
        os.environ["BENCH_RAW_REDIS_URL"] = self.rds.url  # read by bench.raw_celery at import
        from bench import raw_celery

        if self.rds.url != raw_celery.REDIS_URL:
            raise BenchError(f"bench.raw_celery was imported for {raw_celery.REDIS_URL}, not {self.rds.url}")
        try:
            self.rds.flush()
            env = base_env(self.rds.url, "", cfg.log_level)
            self.children.start(f"{self.prefix}-celery-worker", "worker", [
                sys.executable, "-m", "celery", "-A", "bench.raw_celery", "worker", "-Q", raw_celery.QUEUE,
                "-c", str(cfg.raw_concurrency), "-P", cfg.raw_pool, "-n", f"bench-raw@%h-{os.getpid()}-{self.index}",
                "--prefetch-multiplier=1", "-E", f"--loglevel={cfg.log_level}",
                "--without-gossip", "--without-mingle"], env)
            client = redis.Redis.from_url(self.rds.url)
            try:
                if cfg.warmup:
                    w = self._batch(raw_celery, client, cfg.warmup, max(60.0, cfg.timeout))
                    say(f"  warm-up: {cfg.warmup} chains in {w[0]:.2f}s (not counted)")
                    client.delete(raw_celery.DONE_KEY)
                measure = Measure(self.children)
                say(f"  measuring {cfg.processes} chains ...")
                wall, publish = self._batch(raw_celery, client, cfg.processes, cfg.timeout)
                result = RoundResult("raw", self.index, cfg.processes, wall, publish)
                result.extra = {"cpu": measure.finish()}
                return result
            finally:
                client.close()
        finally:
            self.children.stop_all()

    def _batch(self, raw_celery, client: redis.Redis, n: int, timeout: float) -> tuple[float, float]:
        app = raw_celery.app
        t0 = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for i in range(n):
                raw_celery.five_step_chain(i).apply_async(producer=producer)
        published = time.perf_counter()

        def done() -> bool:
            return int(client.get(raw_celery.DONE_KEY) or 0) >= n

        t_end = t0 + wait_until(f"{n} raw Celery chains", done, self.children, timeout - (published - t0))
        t_end = max(t_end, published)
        return t_end - t0, published - t0


# ---------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "implementation": platform.python_implementation()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return info


def source_info() -> dict[str, Any]:
    """The commit measured and the files changed on top of it (read-only git calls)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    changed = git("status", "--porcelain", "--untracked-files=no")
    commit = git("rev-parse", "HEAD")
    return {"commit": None if commit is None else commit.strip(),
            "changed_files": None if changed is None else [line[3:] for line in changed.splitlines() if line]}


def print_table(results: list[RoundResult]) -> None:
    header = (f"{'round':<12}{'N':>6}{'wall s':>9}{'publish s':>11}{'chains|proc/s':>15}{'tasks/s':>10}"
              f"{'dispatch p50':>14}{'p99 ms':>9}{'busy %':>8}")
    say("")
    say(header)
    say("-" * len(header))
    for r in results:
        p50 = r.extra.get("dispatch_p50_ms")
        p99 = r.extra.get("dispatch_p99_ms")
        busy = r.extra.get("cpu", {}).get("machine_busy_pct")
        say(f"{r.side + ' ' + str(r.index):<12}{r.n:>6}{r.wall_s:>9.2f}{r.publish_s:>11.2f}{r.per_s:>15.1f}"
            f"{r.tasks_per_s:>10.1f}{'' if p50 is None else f'{p50:.1f}':>14}{'' if p99 is None else f'{p99:.1f}':>9}"
            f"{'' if busy is None else f'{busy:.0f}':>8}")
    for r in results:
        cpu = r.extra.get("cpu", {}).get("cpu_s")
        if cpu:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if v >= 0.1)
            say(f"  cpu s in {r.side} {r.index} ({r.wall_s:.1f}s wall): {parts}")
    for r in results:
        lb = r.extra.get("latency_breakdown")
        if lb:
            say(f"  latencies in {r.side} {r.index} (p50 / p99 ms): "
                + ", ".join(f"{k[:-3]} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in lb.items()
                            if v["p50_ms"] is not None))
            post = r.extra.get("post_latency", {})
            if post.get("p50_ms") is not None:
                say(f"  POST /process latency in {r.side} {r.index}: p50 {post['p50_ms']:.1f} ms, "
                    f"p99 {post['p99_ms']:.1f} ms")


def write_results(summary: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    tmp.replace(RESULTS)


def summarize(cfg: Config, results: list[RoundResult], db: Database | None, rds: RedisTarget,
              machine: dict[str, Any], started: datetime, duration_s: float) -> dict[str, Any]:
    pipe = [r for r in results if r.side == "pipeline"]
    raw = [r for r in results if r.side == "raw"]
    processes_per_s = _median(r.per_s for r in pipe)
    tasks_per_s = None if processes_per_s is None else TASKS_PER_PROCESS * processes_per_s
    raw_tasks_per_s = _median(r.tasks_per_s for r in raw)
    ratio = tasks_per_s / raw_tasks_per_s if tasks_per_s and raw_tasks_per_s else None
    return {
        "processes_per_s": _r(processes_per_s),
        "tasks_per_s": _r(tasks_per_s),
        "raw_celery_tasks_per_s": _r(raw_tasks_per_s),
        "ratio_to_raw_celery": _r(ratio, 3),
        "dispatch_p50_ms": _r(_median(r.extra.get("dispatch_p50_ms") for r in pipe)),
        "dispatch_p99_ms": _r(_median(r.extra.get("dispatch_p99_ms") for r in pipe)),
        "machine": machine,
        # The same latency without load (--probe processes one at a time after each measured batch).
        "idle_dispatch_p50_ms": _r(_median(r.extra.get("idle", {}).get("dispatch_p50_ms") for r in pipe)),
        "idle_dispatch_p99_ms": _r(_median(r.extra.get("idle", {}).get("dispatch_p99_ms") for r in pipe)),
        "source": source_info(),
        "targets": {
            "processes_per_s": TARGET_PROCESSES_PER_S,
            "processes_per_s_met": None if processes_per_s is None else processes_per_s >= TARGET_PROCESSES_PER_S,
            "ratio_to_raw_celery": TARGET_RATIO,
            "ratio_to_raw_celery_met": None if ratio is None else ratio >= TARGET_RATIO,
        },
        "config": {
            "processes": cfg.processes, "rounds": cfg.rounds, "engines": cfg.engines,
            "concurrency": cfg.concurrency, "pool": cfg.pool, "raw_pool": cfg.raw_pool,
            "raw_concurrency": cfg.raw_concurrency, "warmup": cfg.warmup, "probe": cfg.probe,
            "http_threads": cfg.http_threads,
            "api_threads": cfg.api_threads, "log_level": cfg.log_level, "sides": cfg.sides,
            "tasks_per_process": TASKS_PER_PROCESS, "model": str(MODEL_FILE.relative_to(ROOT)),
        },
        "database": None if db is None else {"kind": db.kind, "where": db.where, "mode": db.mode},
        "redis": {"kind": rds.kind, "url": _mask(rds.url)},
        "rounds": [{"side": r.side, "round": r.index, "n": r.n, "wall_s": _r(r.wall_s, 3),
                    "publish_s": _r(r.publish_s, 3), "per_s": _r(r.per_s), "tasks_per_s": _r(r.tasks_per_s),
                    **r.extra} for r in results],
        "started_at": started.strftime("%Y-%m-%d %H:%M:%S"),
        "duration_s": round(duration_s, 1),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
    }


def print_summary(s: dict[str, Any]) -> None:
    def fmt(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,.1f}{unit}"

    t = s["targets"]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else ("MET" if met else "NOT MET")

    say("")
    say(f"median of {s['config']['rounds']} round(s) per side, N={s['config']['processes']}, "
        f"engines={s['config']['engines']}, concurrency={s['config']['concurrency']}, "
        f"database={s['database']['kind'] if s['database'] else 'n/a'}, redis={s['redis']['kind']}")
    say(f"  pipeline:   {fmt(s['processes_per_s'])} processes/s = {fmt(s['tasks_per_s'])} tasks/s")
    say(f"  raw Celery: {fmt(s['raw_celery_tasks_per_s'])} tasks/s")
    ratio = s["ratio_to_raw_celery"]
    say(f"  ratio:      {'n/a' if ratio is None else f'{ratio:.3f}'} (pipeline tasks/s / raw Celery tasks/s)")
    say(f"  dispatch (task created -> start.begin): p50 {fmt(s['dispatch_p50_ms'], ' ms')}, "
        f"p99 {fmt(s['dispatch_p99_ms'], ' ms')}")
    if s["idle_dispatch_p50_ms"] is not None:
        say(f"  dispatch without load ({s['config']['probe']} processes one at a time): "
            f"p50 {fmt(s['idle_dispatch_p50_ms'], ' ms')}, p99 {fmt(s['idle_dispatch_p99_ms'], ' ms')}")
    say(f"targets: >= {t['processes_per_s']:g} processes/s: {verdict(t['processes_per_s_met'])}; "
        f">= {t['ratio_to_raw_celery']:g}x raw Celery task throughput: {verdict(t['ratio_to_raw_celery_met'])}")
    say(f"written to {RESULTS.relative_to(ROOT)}")


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> tuple[Config, str]:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--processes", "-n", type=int, default=1000, help="processes (and raw chains) per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds per side (alternating raw, pipeline)")
    p.add_argument("--engines", type=int, default=1, help="orchestrator engine processes")
    p.add_argument("--pool", choices=("prefork", "threads", "solo"), default="threads",
                   help="Celery pool of the orchestrator's worker (the product's default: threads)")
    p.add_argument("--raw-pool", choices=("prefork", "threads", "solo"), default="prefork",
                   help="Celery pool of the raw Celery worker (Celery's default: prefork)")
    p.add_argument("--raw-concurrency", type=int, default=os.cpu_count() or 1,
                   help="raw Celery worker processes/threads (Celery's default: the cores)")
    p.add_argument("--concurrency", "-c", type=int, default=2 * (os.cpu_count() or 1),
                   help="the orchestrator worker's concurrency (threads by default)")
    p.add_argument("--warmup", type=int, default=20, help="processes / chains run first, not counted")
    p.add_argument("--probe", type=int, default=20,
                   help="after each measured pipeline batch, processes run one at a time (idle latencies)")
    p.add_argument("--http-threads", type=int, default=16, help="client threads (keep-alive sessions)")
    p.add_argument("--api-threads", type=int, default=None, help="API server threads (default: ORCH_API_THREADS)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds a measured batch may take")
    p.add_argument("--log-level", default="WARNING", help="log level of every child (both sides)")
    p.add_argument("--db", choices=("auto", "postgresql", "sqlite"), default="auto",
                   help="auto: PostgreSQL at ORCH_BENCH_POSTGRES_URL when reachable, else SQLite")
    p.add_argument("--only", choices=("raw", "pipeline"), default=None, help="run one side only")
    a = p.parse_args(argv)
    for name in ("processes", "rounds", "engines", "concurrency", "http_threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    sides = [a.only] if a.only else ["raw", "pipeline"]
    return Config(a.processes, a.rounds, a.engines, a.concurrency, max(0, a.warmup), max(0, a.probe), a.http_threads,
                  a.api_threads, a.timeout, a.log_level.upper(), sides, a.pool, a.raw_pool,
                  a.raw_concurrency), a.db


def _sigterm(*_: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg, want_db = parse_args(argv)
    VAR.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _sigterm)
    # Started in the background by a non-interactive shell, SIGINT comes in ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    machine = machine_info()
    rds: RedisTarget | None = None
    results: list[RoundResult] = []
    try:
        rds = pick_redis()
        db = Database(want_db) if "pipeline" in cfg.sides else None
        say(f"machine: {machine['cores']} cores, {machine.get('cpu_model', '?')}, "
            f"load {machine.get('loadavg_at_start')}, Python {machine['python']}")
        say(f"redis: {_mask(rds.url)} ({rds.kind})")
        if db is not None:
            say(f"database: {db.kind}, {db.where}")
        say(f"N={cfg.processes}, rounds={cfg.rounds} per side, engines={cfg.engines}, "
            f"concurrency={cfg.concurrency}, warm-up={cfg.warmup}, logs in {VAR.relative_to(ROOT)}/")
        for i in range(1, cfg.rounds + 1):
            for side in cfg.sides:
                say(f"[{side} {i}/{cfg.rounds}]")
                if side == "raw":
                    result = RawRound(cfg, i, rds).run()
                else:
                    assert db is not None
                    result = PipelineRound(cfg, i, db, rds).run()
                extra = ""
                if result.side == "pipeline":
                    extra = (f", dispatch p50 {result.extra['dispatch_p50_ms']} ms "
                             f"p99 {result.extra['dispatch_p99_ms']} ms")
                say(f"  {result.n} in {result.wall_s:.2f}s: {result.per_s:.1f}/s, "
                    f"{result.tasks_per_s:.1f} tasks/s{extra}")
                results.append(result)
        summary = summarize(cfg, results, db, rds, machine, started, time.perf_counter() - t_start)
        print_table(results)
        write_results(summary)
        print_summary(summary)
        return 0
    except BenchError as exc:
        say(f"\nBENCHMARK FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted; children stopped")
        return 130
    finally:
        if rds is not None:
            rds.stop()


if __name__ == "__main__":
    sys.exit(main())
