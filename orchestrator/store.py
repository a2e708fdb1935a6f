"""All SQL lives here.

``Store`` owns the SQLAlchemy engine. Work happens in a ``Tx``: ``with store.transaction()
as tx`` writes (SQLite takes its write lock up front, PostgreSQL locks the process rows
it advances), ``with store.read() as tx`` only reads. Hot paths use Core statements and
executemany: the engine applies hundreds of status reports per transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url

from orchestrator.errors import Conflict
from orchestrator.models import Base, Deployment, IdempotencyKey, Model, Outbox, Process, Task, TaskEvent
from orchestrator.states import TASK_ENDED, TaskStatus, process_sources

M, D, P, T, E, OB, IK = (x.__table__ for x in (Model, Deployment, Process, Task, TaskEvent, Outbox, IdempotencyKey))

# Columns the engine rewrites when it applies reports to a task.
TASK_MUTABLE = ("status", "reason", "progress", "outputs", "state", "attempt", "lease_until", "end_time")
_ENDED = [s.value for s in TASK_ENDED]
_DEPLOYMENT_LIGHT = [c for c in D.c if c.name not in ("bpmn_xml", "spec_json")]


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; other URLs pass unchanged."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            # Let SQLAlchemy's "begin" event choose how to begin (pysqlite would defer it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the lock at BEGIN: two engines advancing one process serialize
            # instead of deadlocking on a read-to-write upgrade.
            readonly = conn.get_execution_options().get("orch_readonly", False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    # No ping per checkout (a round trip on every transaction): connections are recycled, and a
    # dead one surfaces as an OperationalError that the engine loop retries.
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


class Store:
    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"

    def create_all(self) -> None:
        """For tests: the schema without Alembic (production uses ``orchestrator db upgrade``)."""
        Base.metadata.create_all(self.engine)

    def drop_all(self) -> None:
        Base.metadata.drop_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.engine.connect() as cx, cx.begin():
            yield Tx(cx, self.is_sqlite)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self.engine.connect().execution_options(orch_readonly=True) as cx, cx.begin():
            yield Tx(cx, self.is_sqlite)

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass
class ProcessQuery:
    """Filters of the Activiti-style process-instance list; ``None`` means "any"."""

    id: int | None = None
    deployment_ids: list[str] | None = None  # processDefinitionId (and involvedUser, resolved)
    definition_key: str | None = None
    business_key: str | None = None
    suspended: bool | None = None
    super_pk: int | None = None
    sub_pk: int | None = None
    exclude_subprocesses: bool = False
    tenant_id: str | None = None
    tenant_id_like: str | None = None
    without_tenant_id: bool = False
    statuses: tuple[str, ...] = ("running", "debug")
    sort: str = "id"
    order: str = "asc"
    start: int = 0
    size: int = 10


# Sort fields of the list, as the second seed names them.
PROCESS_SORTS = {"id": P.c.pk, "processDefinitionId": P.c.deployment_id, "tenantId": P.c.tenant_id,
                 "processDefinitionKey": P.c.model_key}


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Tx:
    """One transaction's worth of queries."""

    def __init__(self, cx: Connection, is_sqlite: bool):
        self.cx = cx
        self.is_sqlite = is_sqlite

    # ------------------------------------------------------------ models and deployments

    def get_model(self, model_id: str) -> Row | None:
        return self.cx.execute(select(M).where(M.c.model_id == model_id)).first()

    def get_model_by_key(self, key: str) -> Row | None:
        return self.cx.execute(select(M).where(M.c.key == key)).first()

    def insert_model(self, model_id: str, key: str, name: str | None, now: datetime) -> None:
        self.cx.execute(insert(M).values(model_id=model_id, key=key, name=name, created_at=now))

    def list_models(self) -> Sequence[Row]:
        latest = (select(D.c.model_id, func.max(D.c.version).label("version"))
                  .group_by(D.c.model_id).subquery())
        return self.cx.execute(
            select(M, latest.c.version).join(latest, latest.c.model_id == M.c.model_id, isouter=True)
            .order_by(M.c.created_at, M.c.key)).all()

    def next_version(self, key: str) -> int:
        current = self.cx.execute(select(func.max(D.c.version)).where(D.c.key == key)).scalar()
        return (current or 0) + 1

    def insert_deployment(self, **values: Any) -> None:
        self.cx.execute(insert(D).values(**values))

    def get_deployment(self, deployment_id: str, light: bool = False) -> Row | None:
        """``light``: without the documents (BPMN XML, parsed spec), for when only the facts matter."""
        cols = _DEPLOYMENT_LIGHT if light else [D]
        return self.cx.execute(select(*cols).where(D.c.deployment_id == deployment_id)).first()

    def latest_deployment(self, *, model_id: str | None = None, key: str | None = None,
                          light: bool = False) -> Row | None:
        q = select(*(_DEPLOYMENT_LIGHT if light else [D]))
        q = q.where(D.c.model_id == model_id) if model_id is not None else q.where(D.c.key == key)
        return self.cx.execute(q.order_by(D.c.version.desc()).limit(1)).first()

    def list_deployments(self, model_id: str) -> Sequence[Row]:
        return self.cx.execute(select(*_DEPLOYMENT_LIGHT).where(D.c.model_id == model_id)
                               .order_by(D.c.version)).all()

    # ------------------------------------------------------------ processes

    def insert_process(self, **values: Any) -> int:
        return self.cx.execute(insert(P).values(**values).returning(P.c.pk)).scalar_one()

    def get_process(self, pk: int) -> Row | None:
        return self.cx.execute(select(P).where(P.c.pk == pk)).first()

    def lock_processes(self, pks: Iterable[int]) -> dict[int, Row]:
        """Rows of the processes about to be advanced, locked until commit (in pk order: no deadlock)."""
        q = select(P).where(P.c.pk.in_(sorted(set(pks)))).order_by(P.c.pk)
        if not self.is_sqlite:
            q = q.with_for_update()
        return {row.pk: row for row in self.cx.execute(q)}

    def move_process(self, pk: int, to: str, **values: Any) -> None:
        """Change a process's status if ``PROCESS_TRANSITIONS`` allows it from where it is; else ``Conflict``.

        The guard is in the ``UPDATE`` itself, so a concurrent change cannot slip between check and write.
        """
        frm = [s.value for s in process_sources(to)]
        res = self.cx.execute(update(P).where(P.c.pk == pk, P.c.status.in_(frm)).values(status=str(to), **values))
        if res.rowcount != 1:
            current = self.cx.execute(select(P.c.status).where(P.c.pk == pk)).scalar()
            raise Conflict(f"process {pk} is {current}: it cannot become {to}")

    def update_process(self, pk: int, **values: Any) -> None:
        self.cx.execute(update(P).where(P.c.pk == pk).values(**values))

    def due_timers(self, now: datetime, limit: int) -> Sequence[Row]:
        q = (select(P).where(P.c.status == "running", P.c.next_timer_at <= now)
             .order_by(P.c.pk).limit(limit))
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return self.cx.execute(q).all()

    def close_subprocesses(self, parent_pk: int, status: str, now: datetime) -> None:
        self.cx.execute(update(P).where(P.c.parent_pk == parent_pk, P.c.kind == "sub", P.c.status == "running")
                        .values(status=status, end_time=now))

    def save_processes(self, saves: list[dict[str, Any]]) -> None:
        """Many ``save_process`` at once; each dict has ``pk``, ``expected`` and the same columns."""
        if not saves:
            return
        cols = [k for k in saves[0] if k not in ("pk", "expected")]
        stmt = (update(P).where(P.c.pk == bindparam("b_pk"), P.c.version == bindparam("b_expected"))
                .values(version=bindparam("b_expected") + 1, **{c: bindparam(f"b_{c}") for c in cols}))
        res = self.cx.execute(stmt, [{f"b_{k}": v for k, v in s.items()} for s in saves])
        if self.cx.dialect.supports_sane_multi_rowcount and res.rowcount != len(saves):
            raise Conflict(f"{len(saves) - res.rowcount} of {len(saves)} processes changed concurrently")

    def save_process(self, pk: int, expected_version: int, **values: Any) -> None:
        """Write a process guarded by its version: a concurrent writer makes this raise."""
        res = self.cx.execute(
            update(P).where(P.c.pk == pk, P.c.version == expected_version)
            .values(version=expected_version + 1, **values))
        if res.rowcount != 1:
            raise Conflict(f"process {pk} changed concurrently (expected version {expected_version})")

    def query_processes(self, q: ProcessQuery, limit_override: int | None = None) -> tuple[Sequence[Row], int]:
        """A page of processes matching ``q``, and how many match in all."""
        where = [P.c.kind.in_(("main", "sub")), P.c.status.in_(q.statuses)]
        if q.id is not None:
            where.append(P.c.pk == q.id)
        if q.deployment_ids is not None:
            where.append(P.c.deployment_id.in_(q.deployment_ids))
        if q.definition_key is not None:
            where.append(P.c.model_key == q.definition_key)
        if q.business_key is not None:
            where.append(P.c.business_key == q.business_key)
        if q.suspended is not None:
            where.append(P.c.suspended.is_(q.suspended))
        if q.super_pk is not None:
            where += [P.c.parent_pk == q.super_pk, P.c.kind == "sub"]
        if q.sub_pk is not None:
            parent = select(P.c.parent_pk).where(P.c.pk == q.sub_pk, P.c.kind == "sub").scalar_subquery()
            where.append(P.c.pk == parent)
        if q.exclude_subprocesses:
            where.append(P.c.kind == "main")
        if q.tenant_id is not None:
            where.append(P.c.tenant_id == q.tenant_id)
        if q.tenant_id_like is not None:
            where.append(P.c.tenant_id.like(q.tenant_id_like, escape="\\"))
        if q.without_tenant_id:
            where.append(P.c.tenant_id.is_(None))
        total = self.cx.execute(select(func.count()).select_from(P).where(*where)).scalar_one()
        column = PROCESS_SORTS[q.sort]
        ordering = [column.asc() if q.order == "asc" else column.desc(), P.c.pk.asc()]
        rows = self.cx.execute(select(P).where(*where).order_by(*ordering).offset(q.start)
                               .limit(limit_override or q.size)).all()
        return rows, total

    def current_activities(self, process_pks: list[int]) -> dict[int, str]:
        """The BPMN id of each process's latest unfinished task (Activiti's ``activityId``)."""
        if not process_pks:
            return {}
        rows = self.cx.execute(
            select(T.c.process_pk, T.c.bpmn_id).where(
                T.c.process_pk.in_(process_pks), T.c.event.in_(("start", "mock")),
                (T.c.status.is_(None)) | (T.c.status.not_in(_ENDED)))
            .order_by(T.c.pk)).all()
        return {pk: bpmn_id for pk, bpmn_id in rows}

    def get_idempotency(self, key: str) -> Row | None:
        return self.cx.execute(select(IK).where(IK.c.key == key)).first()

    def insert_idempotency(self, key: str, request_hash: str, process_pk: int, now: datetime) -> None:
        self.cx.execute(insert(IK).values(key=key, request_hash=request_hash, process_pk=process_pk,
                                          created_at=now))

    # ------------------------------------------------------------ repository

    def query_deployments(self, *, key: str | None = None, key_like: str | None = None, version: int | None = None,
                          latest: bool = False, name: str | None = None, name_like: str | None = None,
                          deployment_id: str | None = None) -> Sequence[Row]:
        where = []
        if name is not None:
            where.append(D.c.name == name)
        if deployment_id is not None:
            where.append(D.c.deployment_id == deployment_id)
        if key is not None:
            where.append(D.c.key == key)
        if key_like is not None:
            where.append(D.c.key.like(key_like, escape="\\"))
        if version is not None:
            where.append(D.c.version == version)
        if name_like is not None:
            where.append(D.c.name.like(name_like, escape="\\"))
        if latest:
            newest = select(D.c.key, func.max(D.c.version).label("v")).group_by(D.c.key).subquery()
            where.append(select(newest.c.v).where(newest.c.key == D.c.key).scalar_subquery() == D.c.version)
        return self.cx.execute(select(*_DEPLOYMENT_LIGHT).where(*where).order_by(D.c.key, D.c.version)).all()

    def deployment_in_use(self, deployment_id: str) -> int:
        """Processes of this deployment that are not over yet."""
        return self.cx.execute(select(func.count()).select_from(P).where(
            P.c.deployment_id == deployment_id,
            P.c.status.in_(("running", "debug", "failed", "rollbacking", "canceling", "deleting")))).scalar_one()

    def delete_deployment(self, deployment_id: str) -> None:
        """Remove a deployment and everything recorded of its processes."""
        pks = select(P.c.pk).where(P.c.deployment_id == deployment_id)
        task_pks = select(T.c.pk).where(T.c.process_pk.in_(pks))
        self.cx.execute(delete(E).where(E.c.task_pk.in_(task_pks)))
        self.cx.execute(delete(OB).where(OB.c.task_pk.in_(task_pks)))
        self.cx.execute(delete(T).where(T.c.process_pk.in_(pks)))
        self.cx.execute(delete(IK).where(IK.c.process_pk.in_(pks)))
        self.cx.execute(update(P).where(P.c.parent_pk.in_(pks)).values(parent_pk=None))
        self.cx.execute(delete(P).where(P.c.deployment_id == deployment_id))
        model_id = self.cx.execute(select(D.c.model_id).where(D.c.deployment_id == deployment_id)).scalar()
        self.cx.execute(delete(D).where(D.c.deployment_id == deployment_id))
        if model_id and not self.cx.execute(select(func.count()).select_from(D)
                                            .where(D.c.model_id == model_id)).scalar_one():
            self.cx.execute(delete(M).where(M.c.model_id == model_id))

    # ------------------------------------------------------------ tasks

    def insert_tasks(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(T).returning(T.c.pk, sort_by_parameter_order=True)
        return list(self.cx.execute(stmt, rows).scalars())

    def get_task(self, pk: int) -> Row | None:
        return self.cx.execute(select(T).where(T.c.pk == pk)).first()

    def list_tasks(self, process_pk: int) -> Sequence[Row]:
        return self.cx.execute(select(T).where(T.c.process_pk == process_pk).order_by(T.c.pk)).all()

    def tasks_by_pk(self, pks: Iterable[int]) -> dict[int, Row]:
        return {r.pk: r for r in self.cx.execute(select(T).where(T.c.pk.in_(sorted(set(pks)))))}

    def handed_over_tasks(self, process_pk: int) -> Sequence[Row]:
        """Forward tasks a worker may have started, latest finished first (the undo order).

        Everything handed to the broker counts, not only what reported ``start.begin``: a
        start may have run while its report was still on the way.
        """
        return self.cx.execute(
            select(T).where(T.c.process_pk == process_pk, T.c.event == "start", T.c.status.is_not(None),
                            T.c.status != TaskStatus.PRODUCE_FAILED.value)
            .order_by(case((T.c.end_time.is_(None), 0), else_=1), T.c.end_time.desc(), T.c.pk.desc())).all()

    def reset_task(self, pk: int, **values: Any) -> None:
        """A new attempt: the row waits for its job again."""
        self.cx.execute(update(T).where(T.c.pk == pk).values(
            status=None, end_time=None, progress=None, state=None, outputs=None, **values))

    def cancel_tasks(self, pks: list[int], now: datetime, reason: str) -> list[int]:
        """Mark not-yet-finished tasks ``canceled``; returns those it moved."""
        if not pks:
            return []
        moved = list(self.cx.execute(
            update(T).where(T.c.pk.in_(pks), (T.c.status.is_(None)) | (T.c.status.not_in(_ENDED)))
            .values(status=TaskStatus.CANCELED.value, end_time=now, lease_until=None, reason=reason)
            .returning(T.c.pk, T.c.attempt)))
        self.insert_events([{"task_pk": pk, "attempt": attempt, "status": TaskStatus.CANCELED.value,
                             "reason": reason, "progress": None, "at": now} for pk, attempt in moved])
        return [pk for pk, _ in moved]

    def set_lease(self, pks: list[int], until: datetime | None) -> None:
        if pks:
            self.cx.execute(update(T).where(T.c.pk.in_(pks)).values(lease_until=until))

    def expired_leases(self, now: datetime, limit: int) -> Sequence[Row]:
        """Unfinished tasks nobody heard of for a lease: their job or its reports were lost."""
        q = (select(T).where(T.c.lease_until < now, (T.c.status.is_(None)) | (T.c.status.not_in(_ENDED)))
             .order_by(T.c.lease_until).limit(limit))
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return self.cx.execute(q).all()

    def redispatched(self, pk: int, lease_until: datetime) -> None:
        self.cx.execute(update(T).where(T.c.pk == pk)
                        .values(redispatches=T.c.redispatches + 1, lease_until=lease_until))

    def update_tasks(self, changes: list[dict[str, Any]]) -> None:
        """Each change has ``pk`` and every column of ``TASK_MUTABLE``."""
        if not changes:
            return
        stmt = (update(T).where(T.c.pk == bindparam("b_pk"))
                .values({c: bindparam(f"b_{c}") for c in TASK_MUTABLE}))
        self.cx.execute(stmt, [{f"b_{k}": v for k, v in ch.items()} for ch in changes])

    def insert_events(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.cx.execute(insert(E), rows)

    def task_events(self, task_pk: int) -> Sequence[Row]:
        return self.cx.execute(select(E).where(E.c.task_pk == task_pk).order_by(E.c.pk)).all()

    def mark_produced(self, task_pks: list[int], now: datetime) -> list[int]:
        """``produce.success`` for tasks still waiting for it; returns those it moved."""
        if not task_pks:
            return []
        moved = list(self.cx.execute(
            update(T).where(T.c.pk.in_(task_pks), T.c.status.is_(None))
            .values(status=TaskStatus.PRODUCE_SUCCESS.value).returning(T.c.pk, T.c.attempt)))
        self.insert_events([{"task_pk": pk, "attempt": attempt, "status": TaskStatus.PRODUCE_SUCCESS.value,
                             "reason": None, "progress": None, "at": now} for pk, attempt in moved])
        return [pk for pk, _ in moved]

    # ------------------------------------------------------------ outbox

    def insert_outbox(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        stmt = insert(OB).returning(OB.c.pk, sort_by_parameter_order=True)
        return list(self.cx.execute(stmt, rows).scalars())

    def delete_outbox(self, pks: list[int]) -> None:
        if pks:
            self.cx.execute(delete(OB).where(OB.c.pk.in_(pks)))

    def stale_outbox(self, older_than: datetime, limit: int) -> Sequence[Row]:
        """Jobs a crashed committer never published (locked, so two sweepers never both take one)."""
        q = select(OB).where(OB.c.created_at < older_than).order_by(OB.c.pk).limit(limit)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return self.cx.execute(q).all()
