"""The SQL schema. Only ``store.py`` queries these tables.

Public ids follow the first seed: ``processInstanceId`` and ``taskId`` are the decimal
strings of the integer primary keys; ``id`` is a uuid.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
PK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    # Named constraints, so later migrations can alter them on every database (SQLite included).
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Model(Base):
    __tablename__ = "models"

    model_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Deployment(Base):
    """An immutable published version of a model, with its parsed spec stored once."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("key", "version"),)

    deployment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.model_id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255))
    process_id: Mapped[str] = mapped_column(String(255))
    bpmn_xml: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    output_template: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Process(Base):
    __tablename__ = "processes"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    # ``main``, or the derived ``rollback`` / ``cancel`` / ``delete`` process of ``parent_pk``.
    kind: Mapped[str] = mapped_column(String(16), default="main", server_default="main")
    parent_pk: Mapped[int | None] = mapped_column(PK, index=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.deployment_id"), index=True)
    model_id: Mapped[str] = mapped_column(String(36))
    model_key: Mapped[str | None] = mapped_column(String(255))
    process_name: Mapped[str] = mapped_column(String(255))
    process_type: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    content: Mapped[str] = mapped_column(Text)
    start_time: Mapped[datetime] = mapped_column(DateTime)
    end_time: Mapped[datetime | None] = mapped_column(DateTime)
    outputs: Mapped[str | None] = mapped_column(Text)
    native_outputs: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    debug: Mapped[bool] = mapped_column(Boolean, default=False)
    # ``SipRS::Mock``: stones run ``mock`` instead of start/monitor.
    mock: Mapped[bool] = mapped_column(Boolean, default=False)
    # The Activiti-style face: business key, tenant, suspension, declared variable types.
    business_key: Mapped[str | None] = mapped_column(String(255), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(255), index=True)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    variable_types: Mapped[str | None] = mapped_column(Text)
    rollback_process_pk: Mapped[int | None] = mapped_column(PK)
    cancel_process_pk: Mapped[int | None] = mapped_column(PK)
    delete_process_pk: Mapped[int | None] = mapped_column(PK)
    # When the earliest timer event of the workflow fires (the engine polls for due ones).
    next_timer_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # Bumped at every save of ``workflow_state``: lets the engine reuse an in-memory copy.
    version: Mapped[int] = mapped_column(Integer, default=0)
    workflow_state: Mapped[str | None] = mapped_column(Text)


class Task(Base):
    """One service-task execution by one stone: the shared task table."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("process_pk", "spiff_task_id", "event"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    process_pk: Mapped[int] = mapped_column(ForeignKey("processes.pk"), index=True)
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    bpmn_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str | None] = mapped_column(String(255))
    stone: Mapped[str] = mapped_column(String(255))
    # What this row runs: start (then monitor), mock, or in a derived process rollback/delete/cancel.
    event: Mapped[str] = mapped_column(String(16), default="start", server_default="start")
    # In a derived process: the main-process task it undoes, and its place in the order.
    origin_pk: Mapped[int | None] = mapped_column(PK)
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Monitor settings, retry policy overrides from the model (BPMN properties).
    properties: Mapped[str | None] = mapped_column(Text)
    # None until the job is handed to the broker (then ``produce.success``).
    status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)
    outputs: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(String(255))
    # The stone's own state between events (what ``start`` returned), for monitor/rollback/delete.
    state: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Bumped by reRun only (not by automatic retries): part of the stone's idempotency key, so a
    # retry finds what the failed attempt made while a reRun asks the provider afresh.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # How often the reconciler had to re-send a job (lost message, dead worker).
    redispatches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The reconciler re-dispatches a task whose lease passed without news.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    create_time: Mapped[datetime] = mapped_column(DateTime)
    end_time: Mapped[datetime | None] = mapped_column(DateTime)


class TaskEvent(Base):
    """Every applied status of a task, in order: the task's history."""

    __tablename__ = "task_events"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    task_pk: Mapped[int] = mapped_column(ForeignKey("tasks.pk"))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(String(255))
    # When the worker saw it happen (reports carry their own time).
    at: Mapped[datetime] = mapped_column(DateTime)


class IdempotencyKey(Base):
    """A start request's ``Idempotency-Key``: the same key and body give the same process."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    process_pk: Mapped[int] = mapped_column(ForeignKey("processes.pk"))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Outbox(Base):
    """Jobs committed with their task rows, published to Celery after the commit."""

    __tablename__ = "outbox"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    task_pk: Mapped[int] = mapped_column(ForeignKey("tasks.pk"), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


Index("ix_task_events_task_pk_pk", TaskEvent.task_pk, TaskEvent.pk)
