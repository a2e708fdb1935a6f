"""Use cases. The API and the engine loop call these; these call store, engine and dispatch.

The engine's hot path is ``apply_reports``: one transaction per batch of status reports,
process rows locked, workflows advanced, new task rows and their jobs (outbox) written
with the workflow state; the jobs are published only after the commit.

Failure handling, cancel and delete run *derived processes*: processes like any other,
with their own task rows (one per stone event to run), linked from the main process by
``rollbackProcessInstanceId`` / ``cancelProcessInstanceId`` / ``deleteProcessInstanceId``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from orchestrator import outputs as output_template
from orchestrator.assignments import user_tasks, users_of
from orchestrator.config import Settings
from orchestrator.dispatch import Dispatcher, job_for
from orchestrator.engine import CompiledModel, Run, StoneCall, WorkflowError, compile_bpmn, variables_from_state
from orchestrator.errors import Conflict, InvalidInput, NotFound
from orchestrator.states import (
    TASK_DONE,
    TASK_ENDED,
    TASK_FAILED,
    TASK_IN_FLIGHT,
    ProcessStatus,
    TaskStatus,
    accepts,
    can_transition,
)
from orchestrator.status import StatusReport
from orchestrator.store import TASK_MUTABLE, ProcessQuery, Store, Tx, dumps
from orchestrator.variables import VariableFilter, typed_variables

log = logging.getLogger(__name__)

MOCK_VARIABLE = "SipRS::Mock"
P = ProcessStatus
S = TaskStatus

# Derived process kind -> (parent status while it runs, parent status when it succeeded / failed,
# whether its tasks run one after the other, the link column on the parent).
DERIVED = {
    "rollback": (P.ROLLBACKING, P.ROLLBACKED, P.ROLLBACK_FAILED, True, "rollback_process_pk"),
    "delete": (P.DELETING, P.DELETED, P.DELETE_FAILED, True, "delete_process_pk"),
    "cancel": (P.CANCELING, P.CANCELED, P.CANCELED, False, "cancel_process_pk"),
}
# The runtime API's processes: those not over yet (Activiti keeps finished ones in its history).
RUNTIME = (P.RUNNING, P.DEBUG)
# Variable filters are applied in Python, reading this many candidate processes at a time.
VARIABLE_SCAN_CHUNK = 1000


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


@dataclass
class Effects:
    """What a committed transaction still has to do outside the database."""

    jobs: list[OutboxEntry] = field(default_factory=list)
    revoke: list[int] = field(default_factory=list)
    # Workflows saved in the transaction: pk -> (new version, run), cached once it commits.
    saved: dict[int, tuple[int, Run]] = field(default_factory=dict)
    # Writes the engine batches: every process's new task rows and workflow saves of one batch
    # go to the database in one statement each (``Service._flush``).
    new_tasks: list[tuple[dict[str, Any], StoneCall]] = field(default_factory=list)
    saves: list[dict[str, Any]] = field(default_factory=list)

    def __iadd__(self, other: Effects) -> Effects:
        self.jobs += other.jobs
        self.revoke += other.revoke
        self.saved.update(other.saved)
        self.new_tasks += other.new_tasks
        self.saves += other.saves
        return self

    def __bool__(self) -> bool:
        return bool(self.jobs or self.revoke)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_uuid(value: str, what: str) -> str:
    """Model and deployment ids are uuids; anything else cannot exist (answered without a query)."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise NotFound(f"{what} {value!r} not found")
    return value


def parse_public_id(value: str, what: str) -> int:
    """``processInstanceId`` / ``taskId`` are decimal strings; anything else cannot exist."""
    # ASCII only: str.isdigit() also takes other scripts' digits and superscripts.
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise NotFound(f"{what} {value!r} not found")
    return int(value)


def definition_id(dep: Row) -> str:
    """Activiti's process-definition id: ``key:version:deploymentId``."""
    return f"{dep.key}:{dep.version}:{dep.deployment_id}"


# ``key:version:deploymentId`` (a key may hold any character, colons too), or a bare deployment id.
_DEFINITION = re.compile(r"(?:(.+):([0-9]{1,10}):)?(" + _UUID.pattern + ")", re.S)


def parse_definition_id(value: str) -> str:
    """The deployment id in a process-definition id; an id of another shape is 404 without a query."""
    match = _DEFINITION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise NotFound(f"process definition {value!r} not found")
    return match.group(3)


def _matches_definition(dep: Row | None, definition: str) -> Row | None:
    """The deployment, if ``definition`` (``key:version:id`` or a bare id) really names it."""
    match = _DEFINITION.fullmatch(definition)
    if dep is None or match.group(1) is None:
        return dep
    return dep if (match.group(1), int(match.group(2))) == (dep.key, dep.version) else None


def _fit(text: str, limit: int = 255) -> str:
    """A derived name cut to the column's size."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loads(text: str | None) -> Any:
    return None if text in (None, "") else json.loads(text)


class Service:
    def __init__(self, store: Store, dispatcher: Dispatcher | None, settings: Settings | None = None,
                 run_cache_size: int = 4096, marks: str = "now"):
        """``marks``: who records published jobs as produced. ``now``: a transaction after each
        publish; ``relay``: the engine, in its next batch (the API's choice, when an engine runs)."""
        self.marks = marks
        self.store = store
        self.dispatcher = dispatcher
        self.settings = settings or Settings.from_env()
        self._models: dict[str, CompiledModel] = {}
        # pk -> (version, Run): the engine reuses a workflow it saved itself instead of re-reading it.
        self._runs: OrderedDict[int, tuple[int, Run]] = OrderedDict()
        self._run_cache_size = run_cache_size
        self._templates: dict[str, str | None] = {}
        self._participants: dict[str, set[str]] = {}
        # Jobs the engine published whose outbox rows await deletion and ``produce.success``:
        # done in the engine's next transaction instead of one of their own.
        self._produced: list[tuple[int, int]] = []

    # ================================================================== models

    def deploy(self, xml: bytes | str, key: str | None = None, name: str | None = None,
               filename: str = "model.bpmn", output_template_text: str | None = None) -> Row:
        compiled = compile_bpmn(xml, filename=filename)
        if output_template_text is not None:
            output_template.check_template(output_template_text)
        key = key or compiled.process_id
        if not key or len(key) > 255:
            raise InvalidInput("model key must be 1 to 255 characters")
        name = name or compiled.name
        now = utcnow()
        text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
        deployment_id = str(uuid.uuid4())
        with self.store.transaction() as tx:
            latest = tx.latest_deployment(key=key)
            if (latest is not None and latest.bpmn_xml == text and latest.name == name
                    and latest.output_template == output_template_text):
                return latest  # re-deploying the same document makes no new version
            model = tx.get_model_by_key(key)
            model_id = model.model_id if model else str(uuid.uuid4())
            if model is None:
                tx.insert_model(model_id, key, name, now)
            tx.insert_deployment(
                deployment_id=deployment_id, model_id=model_id, key=key, version=tx.next_version(key),
                name=name, process_id=compiled.process_id, bpmn_xml=text, spec_json=compiled.spec_json(),
                output_template=output_template_text, created_at=now)
            row = tx.get_deployment(deployment_id)
        self._models[deployment_id] = compiled
        return row

    def list_models(self) -> list[Row]:
        with self.store.read() as tx:
            return list(tx.list_models())

    def get_model(self, model_id: str) -> tuple[Row, list[Row]]:
        check_uuid(model_id, "model")
        with self.store.read() as tx:
            model = tx.get_model(model_id)
            if model is None:
                raise NotFound(f"model {model_id!r} not found")
            return model, list(tx.list_deployments(model_id))

    def _resolve(self, tx: Tx, ref: ModelRef) -> Row:
        if ref.deployment_id:
            dep = tx.get_deployment(check_uuid(ref.deployment_id, "deployment"), light=True)
            if dep is None:
                raise NotFound(f"deployment {ref.deployment_id!r} not found")
        elif ref.model_id:
            dep = tx.latest_deployment(model_id=check_uuid(ref.model_id, "model"), light=True)
            if dep is None:
                raise NotFound(f"model {ref.model_id!r} not found")
        elif ref.key:
            dep = tx.latest_deployment(key=ref.key, light=True)
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

    # ================================================================== reading

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

    # ================================================================== starting

    def start_process(self, ref: ModelRef, process_name: str, variables: Mapping[str, Any],
                      debug: bool = False) -> Row:
        return self.start(ref, process_name, variables, debug=debug)[0]

    def start(self, ref: ModelRef, process_name: str, variables: Mapping[str, Any], *, debug: bool = False,
              business_key: str | None = None, tenant_id: str | None = None,
              variable_types: Mapping[str, str] | None = None,
              idempotency: tuple[str, str] | None = None) -> tuple[Row, bool]:
        """Start a process; returns it and whether this call created it.

        ``idempotency``: ``(key, request hash)``. A key seen before with the same request gives
        back its process (not created); with another request it is a conflict.
        """
        if idempotency is not None:
            replay = self._replay(*idempotency)
            if replay is not None:
                return replay, False
        now = utcnow()
        fx = Effects()
        try:
            with self.store.transaction() as tx:
                dep = self._resolve(tx, ref)
                compiled = self._compiled(tx, dep.deployment_id)
                run = Run.start(compiled, variables)
                mock = variables.get(MOCK_VARIABLE) in (True, "true", "True", 1, "1")
                pk = tx.insert_process(
                    id=str(uuid.uuid4()), deployment_id=dep.deployment_id, model_id=dep.model_id,
                    model_key=dep.key, process_name=process_name, status=P.RUNNING.value,
                    content=dumps(dict(variables)), start_time=now, debug=debug, mock=mock, version=0,
                    business_key=business_key, tenant_id=tenant_id,
                    variable_types=dumps(dict(variable_types)) if variable_types else None)
                # A model that fails on its first steps (a variable it needs is missing) is a bad
                # request: raising rolls the process row back, nothing is written or enqueued.
                proc = tx.get_process(pk)
                self._advance(tx, proc, run, now, fx, calls=run.advance())
                if idempotency is not None:
                    tx.insert_idempotency(idempotency[0], idempotency[1], pk, now)
                row = tx.get_process(pk)
        except IntegrityError:
            if idempotency is None:
                raise
            replay = self._replay(*idempotency)  # a concurrent duplicate committed first
            if replay is None:
                raise
            return replay, False
        self._commit_cache(fx)
        self.publish(fx)
        return row, True

    def _replay(self, key: str, request_hash: str) -> Row | None:
        with self.store.read() as tx:
            seen = tx.get_idempotency(key)
            if seen is None:
                return None
            if seen.request_hash != request_hash:
                raise Conflict(f"Idempotency-Key {key!r} was used for a different request")
            return tx.get_process(seen.process_pk)

    # ================================================================== operator actions

    def cancel_process(self, process_instance_id: str) -> Row:
        """Stop a running process: a cancel process runs ``cancel`` on the tasks in flight."""
        pk = parse_public_id(process_instance_id, "process")
        now = utcnow()
        fx = Effects()
        try:
            with self.store.transaction() as tx:
                proc = self._locked(tx, pk)
                if proc.kind != "main":
                    raise Conflict(f"process {pk} is a {proc.kind} process: it cannot be canceled")
                tx.move_process(pk, P.CANCELING, reason="canceled by request",
                                next_timer_at=None)
                if proc.workflow_state:
                    run = self._load_run(tx, proc)
                    run.cancel()
                    self._save_run(tx, proc, run, fx)
                tasks = [t for t in tx.list_tasks(pk) if t.event in ("start", "mock")]
                waiting = [t.pk for t in tasks if t.status is None]
                fx.revoke += tx.cancel_tasks(waiting, now, "canceled before it started")
                # A handed-over job may be starting right now: it gets a cancel too (see jobguard).
                to_cancel = [t for t in tasks if t.status in TASK_IN_FLIGHT or t.status == S.PRODUCE_SUCCESS]
                fx.revoke += [t.pk for t in to_cancel]
                tx.close_subprocesses(pk, P.CANCELED, now)
                self._derive(tx, tx.get_process(pk), "cancel", to_cancel, now, fx)
        except Exception:
            self._runs.pop(pk, None)
            raise
        self._runs.pop(pk, None)  # a canceled workflow never advances again
        self.publish(fx)
        return self.get_process(process_instance_id)

    def delete_process(self, process_instance_id: str) -> Row:
        """Clean up a finished process: a delete process runs ``delete`` of every task that started."""
        pk = parse_public_id(process_instance_id, "process")
        now = utcnow()
        fx = Effects()
        with self.store.transaction() as tx:
            proc = self._locked(tx, pk)
            if proc.kind != "main":
                raise Conflict(f"process {pk} is a {proc.kind} process: it cannot be deleted")
            tx.move_process(pk, P.DELETING)
            self._derive(tx, tx.get_process(pk), "delete", list(tx.handed_over_tasks(pk)), now, fx)
        self.publish(fx)
        return self.get_process(process_instance_id)

    def rerun_task(self, task_id: str) -> Row:
        """Debug mode: run a failed task again, as a new attempt."""
        task, fx = self._debug_action(task_id, "reRun")
        self.publish(fx)
        return self.get_task(str(task.pk))

    def resume_task(self, task_id: str) -> Row:
        """Debug mode: give up on the failed task, leave debug mode and roll back."""
        task, fx = self._debug_action(task_id, "resume")
        self.publish(fx)
        return self.get_task(str(task.pk))

    def _debug_action(self, task_id: str, action: str) -> tuple[Row, Effects]:
        pk = parse_public_id(task_id, "task")
        now = utcnow()
        fx = Effects()
        with self.store.transaction() as tx:
            task = tx.get_task(pk)
            if task is None:
                raise NotFound(f"task {task_id!r} not found")
            proc = self._locked(tx, task.process_pk)
            if proc.kind != "main" or proc.status != P.DEBUG:
                raise Conflict(f"{action}: process {proc.pk} is not waiting in debug mode (it is {proc.status})")
            task = tx.get_task(pk)
            if task.status not in TASK_FAILED or task.event not in ("start", "mock"):
                raise Conflict(f"{action}: task {pk} has not failed (it is {task.status})")
            if action == "reRun":
                fx += self._new_attempt(tx, task, now, countdown=None, generation=task.generation + 1)
                others = [t for t in tx.list_tasks(proc.pk) if t.pk != pk and t.status in TASK_FAILED]
                if not others:  # every failed task is being run again: the process runs again
                    tx.move_process(proc.pk, P.RUNNING, reason=None, end_time=None)
            else:
                tx.move_process(proc.pk, P.FAILED, end_time=now)
                self._after_failure(tx, proc.pk, now, fx)
        return task, fx

    def _locked(self, tx: Tx, pk: int) -> Row:
        proc = tx.lock_processes([pk]).get(pk)
        if proc is None:
            raise NotFound(f"process {pk!r} not found")
        return proc


    # ================================================================== the Activiti-style face

    def runtime_process(self, tx: Tx, process_instance_id: str, lock: bool = False) -> Row:
        """A process of the runtime API: one still running (Activiti forgets finished ones)."""
        pk = parse_public_id(process_instance_id, "process instance")
        proc = tx.lock_processes([pk]).get(pk) if lock else tx.get_process(pk)
        if proc is None or proc.kind not in ("main", "sub") or proc.status not in RUNTIME:
            raise NotFound(f"process instance {process_instance_id!r} not found (or no longer running)")
        return proc

    def activity_of(self, pk: int) -> str | None:
        with self.store.read() as tx:
            return tx.current_activities([pk]).get(pk)

    def get_runtime_process(self, process_instance_id: str) -> tuple[Row, str | None]:
        with self.store.read() as tx:
            proc = self.runtime_process(tx, process_instance_id)
            return proc, tx.current_activities([proc.pk]).get(proc.pk)

    def query_processes(self, q: ProcessQuery, involved_user: str | None = None,
                        variable_filters: list[VariableFilter] | None = None,
                        with_variables: bool = False) -> tuple[list[Row], int, dict[int, str], dict[int, dict]]:
        """A page of runtime processes, the total, their current activities and (if asked) variables."""
        with self.store.read() as tx:
            if involved_user is not None:
                allowed = [d.deployment_id for d in tx.query_deployments() if involved_user in
                           self._users_of(tx, d.deployment_id)]
                q.deployment_ids = allowed if q.deployment_ids is None else \
                    [d for d in q.deployment_ids if d in allowed]
            if variable_filters:
                # Variables live in the workflow state: filtered here, a chunk of candidates at a time.
                matching, offset = [], 0
                while True:
                    chunk, _ = tx.query_processes(replace(q, start=offset), limit_override=VARIABLE_SCAN_CHUNK)
                    matching += [p for p in chunk if all(f.matches(variables_from_state(p.workflow_state))
                                                         for f in variable_filters)]
                    if len(chunk) < VARIABLE_SCAN_CHUNK:
                        break
                    offset += VARIABLE_SCAN_CHUNK
                rows, total = matching[q.start:q.start + q.size], len(matching)
            else:
                rows, total = tx.query_processes(q)
            activities = tx.current_activities([r.pk for r in rows])
        variables = {r.pk: variables_from_state(r.workflow_state) for r in rows} if with_variables else {}
        return list(rows), total, activities, variables

    def _users_of(self, tx: Tx, deployment_id: str) -> set[str]:
        if deployment_id not in self._participants:
            dep = tx.get_deployment(deployment_id)
            self._participants[deployment_id] = users_of(dep.bpmn_xml, dep.process_id) if dep else set()
        return self._participants[deployment_id]

    def set_suspended(self, process_instance_id: str, suspended: bool) -> Row:
        """Suspend (no new task is dispatched) or activate (what became ready is dispatched now)."""
        now = utcnow()
        fx = Effects()
        with self.store.transaction() as tx:
            proc = self.runtime_process(tx, process_instance_id, lock=True)
            if proc.suspended == suspended:
                raise Conflict(f"process instance {proc.pk} is already {'suspended' if suspended else 'active'}")
            tx.update_process(proc.pk, suspended=suspended)
            proc = tx.get_process(proc.pk)
            if not suspended and proc.status == P.RUNNING and proc.workflow_state:
                self._advance(tx, proc, self._load_run(tx, proc), now, fx)
        self._commit_cache(fx)
        self.publish(fx)
        return self.get_process(process_instance_id)

    def delete_runtime_process(self, process_instance_id: str) -> None:
        """Activiti's DELETE: the process stops (its cancel process stops the tasks in flight)."""
        with self.store.read() as tx:
            self.runtime_process(tx, process_instance_id)
        self.cancel_process(process_instance_id)

    def get_variables(self, process_instance_id: str) -> list[tuple[str, str, Any]]:
        with self.store.read() as tx:
            proc = self.runtime_process(tx, process_instance_id)
        return typed_variables(variables_from_state(proc.workflow_state), _loads(proc.variable_types) or {})

    def set_variables(self, process_instance_id: str, values: Mapping[str, tuple[str, Any]], *,
                      create_only: bool = False, must_exist: bool = False) -> list[tuple[str, str, Any]]:
        """Create or update process variables where the workflow reads them next.

        ``create_only`` (POST): 409 if one exists. ``must_exist`` (PUT of one variable): 404 if not.
        """
        with self.store.transaction() as tx:
            proc = self.runtime_process(tx, process_instance_id, lock=True)
            if not proc.workflow_state:
                raise Conflict(f"process instance {proc.pk} has no variables of its own (a sub-process)")
            run = self._load_run(tx, proc)
            current = run.variables()
            clash = sorted(set(values) & set(current))
            if create_only and clash:
                raise Conflict(f"variables already exist: {', '.join(clash)} (use PUT to update them)")
            missing = sorted(set(values) - set(current))
            if must_exist and missing:
                raise NotFound(f"process instance {proc.pk} has no variable {missing[0]!r}")
            run.set_variables({name: value for name, (_, value) in values.items()})
            types = {**(_loads(proc.variable_types) or {}), **{n: t for n, (t, _) in values.items()}}
            tx.save_process(proc.pk, proc.version, workflow_state=run.dump(), variable_types=dumps(types))
        self._runs.pop(proc.pk, None)
        return [(name, kind, value) for name, (kind, value) in values.items()]

    def jump_to_activity(self, process_instance_id: str, activity_id: str) -> tuple[Row, str | None]:
        """Leave the current activities (their stones get a cancel) and make ``activity_id`` ready."""
        now = utcnow()
        fx = Effects()
        with self.store.transaction() as tx:
            proc = self.runtime_process(tx, process_instance_id, lock=True)
            if proc.kind != "main" or not proc.workflow_state:
                raise Conflict(f"process instance {proc.pk} is a sub-process: jump in its parent")
            run = self._load_run(tx, proc)
            try:
                run.jump_to(activity_id)
            except InvalidInput:
                self._runs.pop(proc.pk, None)
                raise
            tasks = [t for t in tx.list_tasks(proc.pk) if t.event in ("start", "mock")]
            calls = run.advance()
            self._stop_left(tx, proc.pk, run, tasks, now, fx)
            # A task run again (a jump backwards) reuses its row as a new attempt.
            rows = {t.spiff_task_id: t for t in tasks}
            fresh = [c for c in calls if c.spiff_task_id not in rows]
            for call in calls:
                if call.spiff_task_id in rows:
                    task = tx.get_task(rows[call.spiff_task_id].pk)
                    fx += self._new_attempt(tx, task, now, countdown=None, generation=task.generation + 1)
            if proc.status == P.DEBUG:  # a jump is a way out of debug mode
                tx.move_process(proc.pk, P.RUNNING, reason=None)
            proc = tx.get_process(proc.pk)
            self._advance(tx, proc, run, now, fx, calls=fresh)
        self._commit_cache(fx)
        self.publish(fx)
        proc = self.get_process(process_instance_id)  # a jump to the end may have finished it
        return proc, self.activity_of(proc.pk)

    def _stop_left(self, tx: Tx, pk: int, run: Run, tasks: list[Row], now: datetime, fx: Effects) -> None:
        """Tasks a jump left behind: canceled, and their stones told to stop."""
        still = set(run.active_stone_tasks())
        left = [t for t in tasks if t.status not in TASK_ENDED and t.spiff_task_id not in still]
        running = [t for t in left if t.status in TASK_IN_FLIGHT or t.status == S.PRODUCE_SUCCESS]
        fx.revoke += tx.cancel_tasks([t.pk for t in left], now, "left by a jump to another activity")
        self._cancel_jobs(tx, pk, running, now, fx)

    def assignments(self, *, definition_id: str | None, definition_key: str | None,
                    activity_id: str | None) -> list[dict[str, Any]]:
        """Participants of the user tasks of a definition (all, or the one ``activity_id``)."""
        deployment_id = parse_definition_id(definition_id) if definition_id else None
        with self.store.read() as tx:
            if deployment_id:
                dep = _matches_definition(tx.get_deployment(deployment_id), definition_id)
            elif definition_key:
                dep = tx.latest_deployment(key=definition_key)
            else:
                raise InvalidInput("processDefinitionId or processDefinitionKey is required")
            if dep is None:
                raise NotFound(f"process definition {definition_id or definition_key!r} not found")
        items = user_tasks(dep.bpmn_xml, dep.process_id)
        if activity_id:
            items = [i for i in items if i["activityId"] == activity_id]
            if not items:
                raise NotFound(f"no user task {activity_id!r} with assignments in {dep.key}")
        return items

    # -- the repository

    def list_definitions(self, **filters: Any) -> list[Row]:
        with self.store.read() as tx:
            return list(tx.query_deployments(**filters))

    def get_definition(self, definition_id: str, with_documents: bool = False) -> Row:
        deployment_id = parse_definition_id(definition_id)
        with self.store.read() as tx:
            dep = _matches_definition(tx.get_deployment(deployment_id, light=not with_documents), definition_id)
        if dep is None:
            raise NotFound(f"process definition {definition_id!r} not found")
        return dep

    def delete_deployment(self, deployment_id: str) -> None:
        """Remove a deployment that no process still uses (409 otherwise)."""
        check_uuid(deployment_id, "deployment")
        with self.store.transaction() as tx:
            if tx.get_deployment(deployment_id, light=True) is None:
                raise NotFound(f"deployment {deployment_id!r} not found")
            busy = tx.deployment_in_use(deployment_id)
            if busy:
                raise Conflict(f"deployment {deployment_id} is used by {busy} process(es) that are not over")
            tx.delete_deployment(deployment_id)
        self._models.pop(deployment_id, None)
        self._templates.pop(deployment_id, None)
        self._participants.pop(deployment_id, None)

    # ================================================================== the engine

    def apply_reports(self, reports: Iterable[StatusReport]) -> Effects:
        """Apply a batch of status reports in one transaction; return what to publish after it.

        A report is applied only if it belongs to the task's event and current attempt and
        the transition table allows it: duplicates and late reports change nothing.
        """
        reports = list(reports)
        if not reports:
            return Effects()
        now = utcnow()
        lease = timedelta(seconds=self.settings.lease_s)
        touched: set[int] = set()
        fx = Effects()
        produced, self._produced = self._produced, []
        try:
            with self.store.transaction() as tx:
                self._mark_produced(tx, produced, now)
                procs = tx.lock_processes(r.process for r in reports)
                tasks = tx.tasks_by_pk(r.task for r in reports)
                current: dict[int, dict[str, Any]] = {}
                events: list[dict[str, Any]] = []
                ended: dict[int, list[tuple[Row, StatusReport]]] = defaultdict(list)
                for r in reports:
                    row = tasks.get(r.task)
                    if row is None or row.process_pk != r.process:
                        log.warning("report for unknown task %s of process %s ignored", r.task, r.process)
                        continue
                    cur = current.get(r.task) or {c: getattr(row, c) for c in TASK_MUTABLE}
                    if (r.attempt != cur["attempt"] or not accepts(row.event, r.status)
                            or not can_transition(cur["status"], r.status)):
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
                        ended[r.process].append((row, r))
                    else:
                        cur["lease_until"] = now + lease
                    current[r.task] = cur
                    events.append({"task_pk": r.task, "attempt": r.attempt, "status": status.value,
                                   "reason": r.reason, "progress": r.progress, "at": at})
                tx.update_tasks([{"pk": pk, **cur} for pk, cur in current.items()])
                tx.insert_events(events)
                for ppk, items in ended.items():
                    proc = procs.get(ppk)
                    if proc is not None:
                        touched.add(ppk)
                        self._on_ended(tx, proc, items, now, fx)
                self._flush(tx, fx, now)
        except Exception:
            self._produced = produced + self._produced
            for ppk in touched:  # their cached workflows may hold uncommitted changes
                self._runs.pop(ppk, None)
            raise
        self._commit_cache(fx)
        return fx

    def _on_ended(self, tx: Tx, proc: Row, items: list[tuple[Row, StatusReport]], now: datetime,
                  fx: Effects) -> None:
        if proc.kind != "main":
            self._advance_derived(tx, proc, now, fx)
            return
        done, failed = [], []
        for row, r in items:
            if row.event not in ("start", "mock"):
                continue  # a cancel row of a timed-out task: nothing for the workflow to do
            status = TaskStatus(r.status)
            if status in TASK_FAILED and r.retry_in is not None and proc.status in (P.RUNNING, P.DEBUG):
                fx += self._new_attempt(tx, tx.get_task(row.pk), now, countdown=r.retry_in)
            elif status in TASK_FAILED:
                failed.append((row, r))
            elif status in TASK_DONE:
                done.append((row, r))
        # Suspended (and nothing failed), or waiting in debug: results are kept, nothing new is dispatched.
        holding = proc.status == P.DEBUG or (proc.status == P.RUNNING and proc.suspended and not failed)
        if holding:
            if done:
                run = self._load_run(tx, proc)
                for row, r in done:
                    run.complete(row.spiff_task_id, r.outputs)
                self._save_run(tx, proc, run, fx)
        elif proc.status == P.RUNNING:
            run = self._load_run(tx, proc)
            for row, r in done:
                if not run.complete(row.spiff_task_id, r.outputs):
                    log.info("task %s of process %s was no longer waiting", row.pk, proc.pk)
            failed = [(row, r) for row, r in failed if not (r.code and run.catch_error(row.spiff_task_id, r.code))]
            if not failed:
                self._advance(tx, proc, run, now, fx, defer=True)
                return
            row, r = failed[0]
            reason = f"task {row.name} ({row.pk}) {r.status}: {r.reason or 'no reason given'}"
            # Completed branches stay completed; nothing new is dispatched while failed or in debug.
            self._save_run(tx, proc, run, fx)
            if proc.debug:
                tx.move_process(proc.pk, P.DEBUG, reason=reason)
                return
            tx.move_process(proc.pk, P.FAILED, reason=reason, end_time=now)
            self._after_failure(tx, proc.pk, now, fx)
        elif proc.status == P.FAILED:
            self._maybe_rollback(tx, proc.pk, now, fx)

    def _after_failure(self, tx: Tx, pk: int, now: datetime, fx: Effects) -> None:
        """A failed process: nothing not yet started starts; roll back once the rest settled."""
        waiting = [t.pk for t in tx.list_tasks(pk) if t.status is None]
        fx.revoke += tx.cancel_tasks(waiting, now, "process failed before the task started")
        tx.close_subprocesses(pk, P.FAILED, now)
        self._maybe_rollback(tx, pk, now, fx)

    def _maybe_rollback(self, tx: Tx, pk: int, now: datetime, fx: Effects) -> None:
        tasks = tx.list_tasks(pk)
        if any(t.status in TASK_IN_FLIGHT or t.status == S.PRODUCE_SUCCESS for t in tasks):
            return  # rolled back in reverse order of completion: wait until everything completed
        proc = tx.get_process(pk)
        if proc.status != P.FAILED:
            return
        tx.move_process(pk, P.ROLLBACKING)
        self._derive(tx, tx.get_process(pk), "rollback", list(tx.handed_over_tasks(pk)), now, fx)

    def _advance(self, tx: Tx, proc: Row, run: Run, now: datetime, fx: Effects, *,
                 calls: list[StoneCall] | None = None, defer: bool = False) -> None:
        """Step the workflow, create rows and jobs for new stone tasks, save it (guarded by version).

        ``defer``: leave the task rows and the save to ``_flush`` at the end of the batch.
        """
        values: dict[str, Any] = {}
        try:
            calls = run.advance() if calls is None else calls
        except WorkflowError as exc:
            calls = []
            values.update(status=P.FAILED.value, end_time=now, reason=exc.message)
        self._track_subprocesses(tx, proc, run, now)
        self._stop_interrupted(tx, proc.pk, run, now, fx)
        if not values and run.completed:
            values.update(status=P.SUCCESS.value, end_time=now, native_outputs=dumps(run.data),
                          **self._render_outputs(tx, proc, run))
        values["next_timer_at"] = None if values else run.next_timer()
        if defer and values.get("status") != P.FAILED.value:
            fx.new_tasks += [(row, call) for row, call in zip(self._task_rows(proc, calls, now), calls, strict=True)]
            fx.saves.append({"pk": proc.pk, "expected": proc.version, "workflow_state": run.dump(),
                             "status": proc.status, "end_time": proc.end_time, "reason": proc.reason,
                             "native_outputs": proc.native_outputs, "outputs": proc.outputs, **values})
            fx.saved[proc.pk] = (proc.version + 1, run)
            return
        fx.jobs += self._insert_tasks(tx, list(zip(self._task_rows(proc, calls, now), calls, strict=True)), now)
        self._save_run(tx, proc, run, fx, **values)
        if values.get("status") == P.FAILED.value:
            self._after_failure(tx, proc.pk, now, fx)

    def _flush(self, tx: Tx, fx: Effects, now: datetime) -> None:
        """The batch's deferred writes: one insert of task rows, one of jobs, one update of processes."""
        fx.jobs += self._insert_tasks(tx, fx.new_tasks, now)
        tx.save_processes(fx.saves)
        fx.new_tasks, fx.saves = [], []

    def _track_subprocesses(self, tx: Tx, proc: Row, run: Run, now: datetime) -> None:
        """A call activity's sub-process is a process row of its own (``kind`` sub)."""
        began, ended = run.subprocess_changes()
        for spiff_id, called in began:
            sub = tx.insert_process(
                id=str(uuid.uuid4()), kind="sub", parent_pk=proc.pk, deployment_id=proc.deployment_id,
                model_id=proc.model_id, model_key=_fit(called), process_name=_fit(f"{proc.process_name}/{called}"),
                process_type="sub", status=P.RUNNING.value, content="{}", start_time=now, debug=False,
                mock=proc.mock, version=0, business_key=proc.business_key, tenant_id=proc.tenant_id)
            run.mark_subprocess(spiff_id, sub)
        for sub, completed in ended:
            tx.update_process(sub, status=(P.SUCCESS if completed else P.CANCELED).value, end_time=now)

    def _save_run(self, tx: Tx, proc: Row, run: Run, fx: Effects, **values: Any) -> None:
        tx.save_process(proc.pk, proc.version, workflow_state=run.dump(), **values)
        fx.saved[proc.pk] = (proc.version + 1, run)

    def _stop_interrupted(self, tx: Tx, pk: int, run: Run, now: datetime, fx: Effects) -> None:
        """Stone tasks a timer or error boundary event interrupted: mark them, stop their work."""
        interrupted = set(run.cancelled_stone_tasks())
        if not interrupted:
            return
        rows = [t for t in tx.list_tasks(pk) if t.spiff_task_id in interrupted and t.event in ("start", "mock")]
        running = [t for t in rows if t.status in TASK_IN_FLIGHT or t.status == S.PRODUCE_SUCCESS]
        fx.revoke += tx.cancel_tasks([t.pk for t in rows], now, "interrupted by a boundary event")
        self._cancel_jobs(tx, pk, running, now, fx)

    def _cancel_jobs(self, tx: Tx, pk: int, running: list[Row], now: datetime, fx: Effects) -> None:
        """A ``cancel`` row and job for each task whose stone may be working right now."""
        if not running:
            return
        cancel_rows = [{"id": str(uuid.uuid4()), "process_pk": pk, "spiff_task_id": t.spiff_task_id,
                        "bpmn_id": t.bpmn_id, "name": t.name, "namespace": t.namespace, "stone": t.stone,
                        "event": "cancel", "origin_pk": t.pk, "status": None, "params": t.params, "state": t.state,
                        "properties": t.properties, "attempt": 1, "generation": 1, "create_time": now,
                        "lease_until": now + timedelta(seconds=self.settings.lease_s)} for t in running]
        pks = tx.insert_tasks(cancel_rows)
        fx.jobs += self._enqueue(tx, [(p, self._job_for_row(tx, tx.get_task(p))) for p in pks], now)

    def fire_due_timers(self, limit: int = 100) -> int:
        """Advance the running processes whose earliest timer event is due."""
        now = utcnow()
        fx = Effects()
        try:
            with self.store.transaction() as tx:
                due = tx.due_timers(now, limit)
                for proc in due:
                    run = self._load_run(tx, proc)
                    run.fire_timers()
                    self._advance(tx, proc, run, now, fx)
                self._flush(tx, fx, now)
        except Exception:
            self._runs.clear()
            raise
        self._commit_cache(fx)
        self.publish(fx)
        return len(due)

    def _render_outputs(self, tx: Tx, proc: Row, run: Run) -> dict[str, Any]:
        if proc.deployment_id not in self._templates:  # deployments never change
            self._templates[proc.deployment_id] = tx.get_deployment(proc.deployment_id, light=True).output_template
        template = self._templates[proc.deployment_id]
        if not template:
            return {}
        tasks = {(t.namespace or t.name): _loads(t.outputs) for t in tx.list_tasks(proc.pk)}
        try:
            return {"outputs": dumps(output_template.render(template, run.data, tasks))}
        except ValueError as exc:
            return {"reason": f"output template failed: {exc}"}

    def _task_rows(self, proc: Row, calls: list[StoneCall], now: datetime) -> list[dict[str, Any]]:
        lease_until = now + timedelta(seconds=self.settings.lease_s)
        event = "mock" if proc.mock else "start"
        return [{"id": str(uuid.uuid4()), "process_pk": proc.pk, "spiff_task_id": c.spiff_task_id,
                 "bpmn_id": c.bpmn_id, "name": c.name, "namespace": c.namespace, "stone": c.stone,
                 "event": event, "status": None, "params": dumps(c.params),
                 "properties": dumps(c.properties) if c.properties else None, "attempt": 1,
                 "lease_until": lease_until, "create_time": now} for c in calls]

    def _insert_tasks(self, tx: Tx, items: list[tuple[dict[str, Any], StoneCall]],
                      now: datetime) -> list[OutboxEntry]:
        if not items:
            return []
        task_pks = tx.insert_tasks([row for row, _ in items])
        jobs = [job_for(process_pk=row["process_pk"], task_pk=tpk, task_uuid=row["id"], attempt=1, stone=c.stone,
                        event=row["event"], name=c.name, namespace=c.namespace, params=c.params,
                        properties=c.properties)
                for tpk, (row, c) in zip(task_pks, items, strict=True)]
        return self._enqueue(tx, list(zip(task_pks, jobs, strict=True)), now)

    def _enqueue(self, tx: Tx, jobs: list[tuple[int, dict[str, Any]]], now: datetime) -> list[OutboxEntry]:
        outbox_pks = tx.insert_outbox([{"task_pk": tpk, "payload": job, "created_at": now} for tpk, job in jobs])
        return [OutboxEntry(opk, tpk, job) for opk, (tpk, job) in zip(outbox_pks, jobs, strict=True)]

    def _job_for_row(self, tx: Tx, task: Row, *, resend: bool = False, countdown: float | None = None) -> dict:
        """The job that moves ``task`` on; ``resend``: it was lost, continue where the task stands."""
        event = task.event
        state = _loads(task.state)
        if resend and event == "start" and task.status in (S.START_SUCCESS, S.MONITOR_BEGIN):
            event = "monitor"
        # Undo events act on what the original task made, under its key: one identity per resource.
        origin = tx.get_task(task.origin_pk) if task.origin_pk is not None else None
        if origin is not None and state is None:
            state = _loads(origin.state)
        key_uuid, generation = (origin.id, origin.generation) if origin is not None else (task.id, task.generation)
        job = job_for(process_pk=task.process_pk, task_pk=task.pk, task_uuid=key_uuid,
                      attempt=task.attempt, stone=task.stone, event=event, name=task.name,
                      namespace=task.namespace, params=_loads(task.params) or {}, state=state,
                      properties=_loads(task.properties), generation=generation, countdown=countdown)
        if task.origin_pk is not None:
            job["lock"] = task.origin_pk  # never side by side with the work it undoes
        return job

    def _new_attempt(self, tx: Tx, task: Row, now: datetime, *, countdown: float | None,
                     generation: int | None = None) -> Effects:
        attempt = task.attempt + 1
        lease_until = now + timedelta(seconds=self.settings.lease_s + (countdown or 0))
        tx.reset_task(task.pk, attempt=attempt, generation=generation or task.generation, lease_until=lease_until)
        fresh = tx.get_task(task.pk)
        job = self._job_for_row(tx, fresh, countdown=countdown)
        return Effects(jobs=self._enqueue(tx, [(task.pk, job)], now))

    # -- derived processes

    def _derive(self, tx: Tx, parent: Row, kind: str, tasks: list[Row], now: datetime, fx: Effects) -> None:
        """Create the ``kind`` process of ``parent`` with one task per row of ``tasks``, in order."""
        _, _, _, sequential, link = DERIVED[kind]
        pk = tx.insert_process(
            id=str(uuid.uuid4()), kind=kind, parent_pk=parent.pk, deployment_id=parent.deployment_id,
            model_id=parent.model_id, model_key=parent.model_key,
            process_name=_fit(f"{parent.process_name}-{kind}"),
            process_type=kind, status=P.RUNNING.value, content=parent.content, start_time=now, debug=False,
            mock=parent.mock, version=0)
        tx.update_process(parent.pk, **{link: pk})
        rows = [{"id": str(uuid.uuid4()), "process_pk": pk, "spiff_task_id": t.spiff_task_id, "bpmn_id": t.bpmn_id,
                 "name": t.name, "namespace": t.namespace, "stone": t.stone, "event": kind, "origin_pk": t.pk,
                 "seq": i, "status": None, "params": t.params, "state": t.state, "properties": t.properties,
                 "attempt": 1, "generation": 1, "create_time": now} for i, t in enumerate(tasks)]
        tx.insert_tasks(rows)
        self._advance_derived(tx, tx.get_process(pk), now, fx, sequential=sequential)

    def _advance_derived(self, tx: Tx, proc: Row, now: datetime, fx: Effects, *,
                         sequential: bool | None = None) -> None:
        if proc.status != P.RUNNING:
            return
        _, ok_status, failed_status, seq_default, _ = DERIVED[proc.kind]
        sequential = seq_default if sequential is None else sequential
        tasks = list(tx.list_tasks(proc.pk))
        fresh = sorted((t for t in tasks if t.status is None and t.lease_until is None), key=lambda t: t.seq)
        active = [t for t in tasks if t.status not in TASK_ENDED and t not in fresh]
        if fresh and not (sequential and active):
            start = fresh[:1] if sequential else fresh
            lease_until = now + timedelta(seconds=self.settings.lease_s)
            tx.set_lease([t.pk for t in start], lease_until)
            fx.jobs += self._enqueue(tx, [(t.pk, self._job_for_row(tx, t)) for t in start], now)
            return
        if active:
            return
        ok = all(t.status in TASK_DONE for t in tasks)
        failures = [t for t in tasks if t.status not in TASK_DONE]
        reason = None if ok else "; ".join(f"{t.name} ({t.pk}) {t.status}: {t.reason}" for t in failures)[:2000]
        tx.move_process(proc.pk, P.SUCCESS if ok else P.FAILED, end_time=now, reason=reason)
        parent_status = ok_status if ok else failed_status
        if proc.kind == "cancel":
            in_flight = [t.pk for t in tx.list_tasks(proc.parent_pk) if t.status not in TASK_ENDED]
            tx.cancel_tasks(in_flight, now, "canceled by request")
        tx.move_process(proc.parent_pk, parent_status, end_time=now,
                        **({} if ok else {"reason": f"{proc.kind} process {proc.pk} failed: {reason}"}))

    # -- the in-memory workflow cache

    def _load_run(self, tx: Tx, proc: Row) -> Run:
        cached = self._runs.get(proc.pk)
        if cached is not None and cached[0] == proc.version:
            self._runs.move_to_end(proc.pk)
            return cached[1]
        return Run.restore(self._compiled(tx, proc.deployment_id), proc.workflow_state)

    def _commit_cache(self, fx: Effects) -> None:
        """After a commit: keep the workflows just saved, at their new version, while they run."""
        for pk, (version, run) in fx.saved.items():
            if run.completed:
                self._runs.pop(pk, None)
                continue
            self._runs[pk] = (version, run)
            self._runs.move_to_end(pk)
        while len(self._runs) > self._run_cache_size:
            self._runs.popitem(last=False)

    # ================================================================== recovery

    def reconcile(self, limit: int = 200) -> int:
        """Re-send the job of every unfinished task whose lease ran out; returns how many."""
        now = utcnow()
        fx = Effects()
        with self.store.transaction() as tx:
            rows = tx.expired_leases(now, limit)
            lease_until = now + timedelta(seconds=self.settings.lease_s)
            jobs = []
            for task in rows:
                log.warning("task %s (%s) silent past its lease: re-dispatching", task.pk, task.status)
                tx.redispatched(task.pk, lease_until)
                jobs.append((task.pk, self._job_for_row(tx, task, resend=True)))
            fx.jobs += self._enqueue(tx, jobs, now)
        self.publish(fx)
        return len(rows)

    # ================================================================== the outbox relay

    def publish(self, fx: Effects, defer_marks: bool = False) -> None:
        """Hand committed jobs to the broker; those it refuses stay in the outbox for the sweeper.

        ``defer_marks`` (the engine loop): record them as produced in the next batch's transaction.
        """
        if not fx or self.dispatcher is None:
            return
        if fx.revoke:
            try:
                self.dispatcher.revoke(fx.revoke)
            except Exception:  # the canceled status already makes the task's reports no-ops
                log.exception("could not revoke tasks %s", fx.revoke)
        if not fx.jobs:
            return
        failed = {job["task"] for job, _ in self.dispatcher.publish([e.job for e in fx.jobs])}
        sent = [(e.outbox_pk, e.task_pk) for e in fx.jobs if e.task_pk not in failed]
        if defer_marks:
            self._produced += sent
        elif self.marks == "relay":
            try:
                self.dispatcher.hand_over_produced(sent)
            except Exception:  # the outbox sweeper publishes them again and marks them then
                log.exception("could not hand %d produced jobs over to the engine", len(sent))
        elif sent:
            with self.store.transaction() as tx:
                self._mark_produced(tx, sent, utcnow())

    def collect_produced(self) -> None:
        """Take over the marks other processes (the API) handed to the engine."""
        if self.dispatcher is not None:
            self._produced += self.dispatcher.take_produced()

    def flush_produced(self) -> None:
        """Record deferred ``produce.success`` marks now (the engine calls this when idle)."""
        produced, self._produced = self._produced, []
        if produced:
            try:
                with self.store.transaction() as tx:
                    self._mark_produced(tx, produced, utcnow())
            except Exception:
                self._produced = produced + self._produced
                raise

    @staticmethod
    def _mark_produced(tx: Tx, produced: list[tuple[int, int]], now: datetime) -> None:
        if produced:
            tx.delete_outbox([o for o, _ in produced])
            tx.mark_produced([t for _, t in produced], now)

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
            self._mark_produced(tx, [(r.pk, r.task_pk) for r in sent], now)
            expired = [r for r in rows if r.task_pk in failed
                       and r.created_at < now - timedelta(seconds=give_up_after_s)]
            tx.delete_outbox([r.pk for r in expired])
        if expired:
            self.publish(self.apply_reports(
                StatusReport(process=r.payload["process"], task=r.task_pk, attempt=r.payload["attempt"],
                             status=S.PRODUCE_FAILED, at=now.replace(tzinfo=UTC).timestamp(),
                             reason=f"broker refused the job: {failed[r.task_pk]}")
                for r in expired))
        return len(sent)
