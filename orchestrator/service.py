"""Use cases. The API and the engine loop call these; these call store, engine and dispatch.

The engine's hot path is ``apply_reports``: one transaction per batch of status reports,
process rows locked, workflows advanced, new task rows and their jobs (outbox) written
with the workflow state; the jobs are published only after the commit.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row

from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher, job_for
from orchestrator.engine import CompiledModel, Run, StoneCall, WorkflowError, compile_bpmn
from orchestrator.errors import InvalidInput, NotFound
from orchestrator.states import TASK_DONE, TASK_ENDED, TASK_FAILED, ProcessStatus, TaskStatus, can_transition
from orchestrator.status import StatusReport
from orchestrator.store import TASK_MUTABLE, Store, Tx, dumps

log = logging.getLogger(__name__)

MOCK_VARIABLE = "SipRS::Mock"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ModelRef:
    """How a start request names its model: exactly one is used, in this order."""

    deployment_id: str | None = None
    model_id: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    outbox_pk: int
    task_pk: int
    job: dict[str, Any]


def parse_public_id(value: str, what: str) -> int:
    """``processInstanceId`` / ``taskId`` are decimal strings; anything else cannot exist."""
    if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
        raise NotFound(f"{what} {value!r} not found")
    return int(value)


class Service:
    def __init__(self, store: Store, dispatcher: Dispatcher | None, settings: Settings | None = None,
                 run_cache_size: int = 4096):
        self.store = store
        self.dispatcher = dispatcher
        self.settings = settings or Settings.from_env()
        self._models: dict[str, CompiledModel] = {}
        # pk -> (version, Run): the engine reuses a workflow it saved itself instead of re-reading it.
        self._runs: OrderedDict[int, tuple[int, Run]] = OrderedDict()
        self._run_cache_size = run_cache_size

    # ------------------------------------------------------------------ models

    def deploy(self, xml: bytes | str, key: str | None = None, name: str | None = None,
               filename: str = "model.bpmn") -> Row:
        compiled = compile_bpmn(xml, filename=filename)
        key = key or compiled.process_id
        if not key or len(key) > 255:
            raise InvalidInput("model key must be 1 to 255 characters")
        name = name or compiled.name
        now = utcnow()
        text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
        deployment_id = str(uuid.uuid4())
        with self.store.transaction() as tx:
            latest = tx.latest_deployment(key=key)
            if latest is not None and latest.bpmn_xml == text and latest.name == name:
                return latest  # re-deploying the same document makes no new version
            model = tx.get_model_by_key(key)
            model_id = model.model_id if model else str(uuid.uuid4())
            if model is None:
                tx.insert_model(model_id, key, name, now)
            tx.insert_deployment(
                deployment_id=deployment_id, model_id=model_id, key=key, version=tx.next_version(key),
                name=name, process_id=compiled.process_id, bpmn_xml=text, spec_json=compiled.spec_json(),
                output_template=None, created_at=now)
            row = tx.get_deployment(deployment_id)
        self._models[deployment_id] = compiled
        return row

    def list_models(self) -> list[Row]:
        with self.store.read() as tx:
            return list(tx.list_models())

    def get_model(self, model_id: str) -> tuple[Row, list[Row]]:
        with self.store.read() as tx:
            model = tx.get_model(model_id)
            if model is None:
                raise NotFound(f"model {model_id!r} not found")
            return model, list(tx.list_deployments(model_id))

    def _resolve(self, tx: Tx, ref: ModelRef) -> Row:
        if ref.deployment_id:
            dep = tx.get_deployment(ref.deployment_id)
            if dep is None:
                raise NotFound(f"deployment {ref.deployment_id!r} not found")
        elif ref.model_id:
            dep = tx.latest_deployment(model_id=ref.model_id)
            if dep is None:
                raise NotFound(f"model {ref.model_id!r} not found")
        elif ref.key:
            dep = tx.latest_deployment(key=ref.key)
            if dep is None:
                raise NotFound(f"no model with key {ref.key!r}")
        else:
            raise InvalidInput("one of modelId, deploymentId or key is required")
        return dep

    def _compiled(self, tx: Tx, deployment_id: str) -> CompiledModel:
        compiled = self._models.get(deployment_id)
        if compiled is None:
            dep = tx.get_deployment(deployment_id)
            compiled = self._models[deployment_id] = CompiledModel.from_spec_json(dep.spec_json)
        return compiled

    # ------------------------------------------------------------------ processes

    def start_process(self, ref: ModelRef, process_name: str, variables: Mapping[str, Any],
                      debug: bool = False) -> Row:
        now = utcnow()
        with self.store.transaction() as tx:
            dep = self._resolve(tx, ref)
            compiled = self._compiled(tx, dep.deployment_id)
            run = Run.start(compiled, variables)
            mock = variables.get(MOCK_VARIABLE) in (True, "true", "True", 1, "1")
            pk = tx.insert_process(
                id=str(uuid.uuid4()), deployment_id=dep.deployment_id, model_id=dep.model_id,
                model_key=dep.key, process_name=process_name, status=ProcessStatus.RUNNING.value,
                content=dumps(dict(variables)), start_time=now, debug=debug, mock=mock, version=0)
            # A model that fails on its first steps (a variable it needs is missing) is a bad
            # request: raising rolls the process row back, nothing is written or enqueued.
            entries = self._advance(tx, pk, run, mock, now, version=0, calls=run.advance())
            row = tx.get_process(pk)
        self._cache_run(row, run)
        self.publish(entries)
        with self.store.read() as tx:
            return tx.get_process(pk)

    def get_process(self, process_instance_id: str) -> Row:
        pk = parse_public_id(process_instance_id, "process")
        with self.store.read() as tx:
            row = tx.get_process(pk)
        if row is None:
            raise NotFound(f"process {process_instance_id!r} not found")
        return row

    def list_tasks(self, process_instance_id: str) -> list[Row]:
        pk = parse_public_id(process_instance_id, "process")
        with self.store.read() as tx:
            if tx.get_process(pk) is None:
                raise NotFound(f"process {process_instance_id!r} not found")
            return list(tx.list_tasks(pk))

    def get_task(self, task_id: str) -> Row:
        pk = parse_public_id(task_id, "task")
        with self.store.read() as tx:
            row = tx.get_task(pk)
        if row is None:
            raise NotFound(f"task {task_id!r} not found")
        return row

    def task_history(self, task_id: str) -> list[Row]:
        pk = parse_public_id(task_id, "task")
        with self.store.read() as tx:
            if tx.get_task(pk) is None:
                raise NotFound(f"task {task_id!r} not found")
            return list(tx.task_events(pk))

    # ------------------------------------------------------------------ the engine

    def apply_reports(self, reports: Iterable[StatusReport]) -> list[OutboxEntry]:
        """Apply a batch of status reports in one transaction; return the jobs to publish.

        A report is applied only if its attempt is the task's current one and the
        transition table allows it: duplicates and late reports change nothing.
        """
        reports = list(reports)
        if not reports:
            return []
        now = utcnow()
        lease = timedelta(seconds=self.settings.lease_s)
        touched: set[int] = set()
        try:
            with self.store.transaction() as tx:
                procs = tx.lock_processes(r.process for r in reports)
                tasks = tx.tasks_by_pk(r.task for r in reports)
                current: dict[int, dict[str, Any]] = {}
                events: list[dict[str, Any]] = []
                finished: dict[int, list[tuple[Row, StatusReport]]] = defaultdict(list)
                for r in reports:
                    row = tasks.get(r.task)
                    if row is None or row.process_pk != r.process:
                        log.warning("report for unknown task %s of process %s ignored", r.task, r.process)
                        continue
                    cur = current.get(r.task) or {c: getattr(row, c) for c in TASK_MUTABLE}
                    if r.attempt != cur["attempt"] or not can_transition(cur["status"], r.status):
                        continue
                    status = TaskStatus(r.status)
                    at = datetime.fromtimestamp(r.at, UTC).replace(tzinfo=None)
                    cur.update(status=status.value, reason=r.reason if r.reason is not None else cur["reason"],
                               progress=r.progress if r.progress is not None else cur["progress"])
                    if r.outputs is not None:
                        cur["outputs"] = dumps(r.outputs)
                    if r.state is not None:
                        cur["state"] = dumps(r.state)
                    if status in TASK_ENDED:
                        cur["end_time"], cur["lease_until"] = at, None
                    else:
                        cur["lease_until"] = now + lease
                    current[r.task] = cur
                    events.append({"task_pk": r.task, "attempt": r.attempt, "status": status.value,
                                   "reason": r.reason, "progress": r.progress, "at": at})
                    if status in TASK_DONE or status in TASK_FAILED:
                        finished[r.process].append((row, r))
                tx.update_tasks([{"pk": pk, **cur} for pk, cur in current.items()])
                tx.insert_events(events)
                entries: list[OutboxEntry] = []
                for ppk, items in finished.items():
                    proc = procs.get(ppk)
                    if proc is None or proc.status != ProcessStatus.RUNNING.value:
                        continue
                    touched.add(ppk)
                    entries += self._on_tasks_finished(tx, proc, items, now)
            for ppk in touched:
                self._refresh_cache(ppk)
            return entries
        except Exception:
            for ppk in touched:
                self._runs.pop(ppk, None)
            raise

    def _on_tasks_finished(self, tx: Tx, proc: Row, items: list[tuple[Row, StatusReport]],
                           now: datetime) -> list[OutboxEntry]:
        failures = [(row, r) for row, r in items if TaskStatus(r.status) in TASK_FAILED]
        if failures:
            row, r = failures[0]
            reason = f"task {row.name} ({row.pk}) {r.status}: {r.reason or 'no reason given'}"
            tx.save_process(proc.pk, proc.version, status=ProcessStatus.FAILED.value, end_time=now,
                            reason=reason)
            self._runs.pop(proc.pk, None)
            return []
        run = self._load_run(tx, proc)
        for row, r in items:
            if not run.complete(row.spiff_task_id, r.outputs):
                log.info("task %s of process %s was no longer waiting", row.pk, proc.pk)
        return self._advance(tx, proc.pk, run, proc.mock, now, version=proc.version, calls=None)

    def _advance(self, tx: Tx, pk: int, run: Run, mock: bool, now: datetime, *, version: int,
                 calls: list[StoneCall] | None) -> list[OutboxEntry]:
        """Step the workflow, create rows and jobs for new stone tasks, save it (guarded by version)."""
        values: dict[str, Any] = {}
        try:
            calls = run.advance() if calls is None else calls
        except WorkflowError as exc:
            calls = []
            values.update(status=ProcessStatus.FAILED.value, end_time=now, reason=exc.message)
        entries = self._create_tasks(tx, pk, calls, mock, now)
        if not values and run.completed:
            values.update(status=ProcessStatus.SUCCESS.value, end_time=now,
                          native_outputs=dumps(run.data))
        tx.save_process(pk, version, workflow_state=run.dump(), **values)
        return entries

    def _create_tasks(self, tx: Tx, process_pk: int, calls: list[StoneCall], mock: bool,
                      now: datetime) -> list[OutboxEntry]:
        if not calls:
            return []
        lease_until = now + timedelta(seconds=self.settings.lease_s)
        rows = [{"id": str(uuid.uuid4()), "process_pk": process_pk, "spiff_task_id": c.spiff_task_id,
                 "bpmn_id": c.bpmn_id, "name": c.name, "namespace": c.namespace, "stone": c.stone,
                 "status": None, "params": dumps(c.params), "attempt": 1, "lease_until": lease_until,
                 "create_time": now} for c in calls]
        task_pks = tx.insert_tasks(rows)
        jobs = [job_for(process_pk=process_pk, task_pk=tpk, task_uuid=row["id"], attempt=1, stone=c.stone,
                        event="mock" if mock else "start", name=c.name, namespace=c.namespace,
                        params=c.params, properties=c.properties)
                for tpk, row, c in zip(task_pks, rows, calls, strict=True)]
        outbox_pks = tx.insert_outbox([{"task_pk": tpk, "payload": job, "created_at": now}
                                       for tpk, job in zip(task_pks, jobs, strict=True)])
        return [OutboxEntry(opk, tpk, job) for opk, tpk, job in zip(outbox_pks, task_pks, jobs, strict=True)]

    # -- the in-memory workflow cache

    def _load_run(self, tx: Tx, proc: Row) -> Run:
        cached = self._runs.get(proc.pk)
        if cached is not None and cached[0] == proc.version:
            self._runs.move_to_end(proc.pk)
            return cached[1]
        run = Run.restore(self._compiled(tx, proc.deployment_id), proc.workflow_state)
        self._runs[proc.pk] = (proc.version, run)  # provisional, confirmed by _refresh_cache
        return run

    def _cache_run(self, proc: Row, run: Run) -> None:
        if proc.status != ProcessStatus.RUNNING.value:
            self._runs.pop(proc.pk, None)
            return
        self._runs[proc.pk] = (proc.version, run)
        self._runs.move_to_end(proc.pk)
        while len(self._runs) > self._run_cache_size:
            self._runs.popitem(last=False)

    def _refresh_cache(self, pk: int) -> None:
        cached = self._runs.get(pk)
        if cached is None:
            return
        # The save bumped the version by one; keep the object only if still running.
        if cached[1].completed:
            self._runs.pop(pk, None)
        else:
            self._runs[pk] = (cached[0] + 1, cached[1])

    # ------------------------------------------------------------------ the outbox relay

    def publish(self, entries: list[OutboxEntry]) -> None:
        """Hand committed jobs to the broker; those it refuses stay in the outbox for the sweeper."""
        if not entries:
            return
        if self.dispatcher is None:
            return
        failed = {job["task"] for job, _ in self.dispatcher.publish([e.job for e in entries])}
        sent = [e for e in entries if e.task_pk not in failed]
        if sent:
            with self.store.transaction() as tx:
                tx.delete_outbox([e.outbox_pk for e in sent])
                tx.mark_produced([e.task_pk for e in sent if e.job["event"] in ("start", "mock")], utcnow())

    def sweep_outbox(self, older_than_s: float = 5.0, give_up_after_s: float = 120.0,
                     limit: int = 500) -> int:
        """Publish jobs whose committer died before publishing; fail those the broker keeps refusing."""
        now = utcnow()
        with self.store.transaction() as tx:
            rows = tx.stale_outbox(now - timedelta(seconds=older_than_s), limit)
            if not rows or self.dispatcher is None:
                return 0
            jobs = [r.payload for r in rows]
            failed = dict((job["task"], reason) for job, reason in self.dispatcher.publish(jobs))
            sent = [r for r in rows if r.task_pk not in failed]
            tx.delete_outbox([r.pk for r in sent])
            tx.mark_produced([r.task_pk for r in sent if r.payload["event"] in ("start", "mock")], now)
            expired = [r for r in rows if r.task_pk in failed
                       and r.created_at < now - timedelta(seconds=give_up_after_s)]
            tx.delete_outbox([r.pk for r in expired])
        if expired:
            self.apply_reports(StatusReport(process=r.payload["process"], task=r.task_pk,
                                            attempt=r.payload["attempt"], status=TaskStatus.PRODUCE_FAILED,
                                            at=now.replace(tzinfo=UTC).timestamp(),
                                            reason=f"broker refused the job: {failed[r.task_pk]}")
                               for r in expired)
        return len(sent)


def loads(text: str | None) -> Any:
    return None if text in (None, "") else json.loads(text)
