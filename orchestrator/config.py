"""Settings: defaults, then ``ORCH_*`` environment variables.

Every process of the stack (api, engine, worker) reads the same variables, so one
environment describes one deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

VAR_DIR = Path(os.environ.get("ORCH_VAR_DIR", "var"))


def _default_database_url() -> str:
    return f"sqlite:///{(VAR_DIR / 'orchestrator.db').resolve()}"


def _parse_bool(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    # SQL database, the source of truth. SQLite file by default, PostgreSQL in production.
    database_url: str = field(default_factory=_default_database_url)
    # Redis: Celery broker and the status stream. Unset means "start an embedded one" (make run).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis stream that workers append status reports to, and the engine's consumer group.
    status_stream: str = "orch:status"
    status_group: str = "engine"
    # How many status reports the engine applies in one transaction.
    engine_batch: int = 500
    # Seconds an engine blocks on the stream when idle.
    engine_block_ms: int = 200
    # Seconds before a report left pending by a dead engine consumer is claimed by another.
    engine_claim_idle_s: float = 30.0
    # Seconds a dispatched task may go without news before the reconciler re-dispatches it.
    lease_s: float = 300.0
    # Default seconds between two monitor polls, unless the stone or the model says otherwise.
    monitor_interval_s: float = 1.0
    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_threads: int = 8
    # Bearer tokens accepted by the API, comma separated. Empty: no authentication (local runs only).
    api_tokens: str = ""
    # Largest request body the API accepts, in bytes.
    max_body_bytes: int = 4 * 1024 * 1024
    flower_port: int = 5555
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"ORCH_{f.name.upper()}")
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool}.get(
                str(f.type), str)
            values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
        values.update(overrides)
        return cls(**values)

    @property
    def token_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())
