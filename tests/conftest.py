"""Shared fixtures: a real Redis and real databases.

Redis: ``ORCH_TEST_REDIS_URL``, else 127.0.0.1:6379 db 15, else an embedded redis-server
the project starts (the same way ``make run`` does).

Databases: SQLite always; PostgreSQL when reachable at ``ORCH_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``). Locally a missing PostgreSQL skips
those cases with a loud reason; in CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from orchestrator.migrate import upgrade
from orchestrator.redis_server import EmbeddedRedis, is_reachable
from orchestrator.store import Store, normalize_url

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IN_CI = bool(os.environ.get("CI"))
POSTGRES_URL = os.environ.get("ORCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

_postgres_ok: bool | None = None


def postgres_reachable() -> bool:
    global _postgres_ok
    if _postgres_ok is None:
        try:
            engine = sa.create_engine(normalize_url(POSTGRES_URL), connect_args={"connect_timeout": 3})
            with engine.connect():
                pass
            engine.dispose()
            _postgres_ok = True
        except Exception:
            _postgres_ok = False
    return _postgres_ok


def require_postgres() -> None:
    if postgres_reachable():
        return
    message = f"PostgreSQL not reachable at {POSTGRES_URL}"
    if IN_CI:
        pytest.fail(message + " (CI must test against PostgreSQL)")
    warnings.warn(message + ": PostgreSQL cases SKIPPED", stacklevel=2)
    pytest.skip("SKIPPED LOUDLY: " + message)


# ------------------------------------------------------------------ redis

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("ORCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if is_reachable(url):
        yield url
        return
    if "ORCH_TEST_REDIS_URL" in os.environ:
        pytest.fail(f"ORCH_TEST_REDIS_URL={url} is not reachable")
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# ------------------------------------------------------------------ databases

@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A throw-away, migrated PostgreSQL database, dropped afterwards."""
    require_postgres()
    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as cx:
        cx.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(normalize_url(POSTGRES_URL)).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as cx:
            cx.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with scratch_postgres() as url:
        yield url


TABLES = ("task_events", "outbox", "tasks", "processes", "deployments", "models")


def _empty(store: Store) -> None:
    with store.engine.begin() as cx:
        if store.is_sqlite:
            for table in TABLES:
                cx.exec_driver_sql(f"DELETE FROM {table}")
        else:
            cx.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A migrated, empty database: SQLite, and PostgreSQL when there is one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
        upgrade(url)
        yield url
        return
    url = request.getfixturevalue("postgres_database")
    store = Store(url)
    _empty(store)
    store.dispose()
    yield url


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    st = Store(db_url)
    yield st
    st.dispose()


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()
