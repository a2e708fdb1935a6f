"""The SpiffWorkflow wrapper: parse BPMN into a model, run it, persist it.

Nothing here touches SQL or Redis. A service task becomes a ``StoneTask`` whose
``_execute`` returns None, so SpiffWorkflow leaves it STARTED; the engine hands it to a
stone and completes it from outside when the stone reports success.

The parsed spec is stored once per deployment (``CompiledModel.spec_json``); a process
stores only its task tree and data (``Run.dump``).
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import ErrorEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent, ThrowingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.service_task import ServiceTask as ServiceTaskMixin
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import SpiffTaskParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.serializer.task_spec import SpiffBpmnTaskConverter
from SpiffWorkflow.spiff.specs.spiff_task import SpiffBpmnTask
from SpiffWorkflow.util.task import TaskState

from orchestrator.errors import InvalidInput, ModelInvalid

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
# Reserved workflow-data keys, never stone outputs.
_INTERNAL = "orch"

# ---------------------------------------------------------------- safe expressions

_SAFE_BUILTIN_NAMES = [
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "int", "isinstance", "len", "list", "map", "max", "min", "range", "reversed",
    "round", "set", "sorted", "str", "sum", "tuple", "zip", "True", "False", "None",
]
SAFE_BUILTINS: dict[str, Any] = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}


def check_expression(source: str, mode: str = "eval") -> None:
    """Refuse what could escape the sandbox: dunder names and attributes, imports."""
    try:
        tree = ast.parse(source, mode=mode)
    except SyntaxError as exc:
        raise ModelInvalid(f"invalid expression {source!r}: {exc.msg}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ModelInvalid(f"expression {source!r} uses private attribute {node.attr!r}")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ModelInvalid(f"expression {source!r} uses reserved name {node.id!r}")
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)):
            raise ModelInvalid(f"expression {source!r}: imports and globals are not allowed")


class SafeEnvironment(TaskDataEnvironment):
    """Task-data environment whose expressions see only a small set of builtins."""

    def __init__(self) -> None:
        super().__init__({"__builtins__": SAFE_BUILTINS})

    def evaluate(self, expression, context, external_context=None):
        check_expression(expression, "eval")
        return super().evaluate(expression, context, external_context)

    def execute(self, script, context, external_context=None):
        check_expression(script, "exec")
        return super().execute(script, context, external_context)

    def call_service(self, context, **kwargs):  # pragma: no cover - StoneTask never calls it
        raise NotImplementedError("service tasks run as stones")


SCRIPT_ENGINE = PythonScriptEngine(environment=SafeEnvironment())

# ---------------------------------------------------------------- the stone task spec


class StoneTask(ServiceTaskMixin, SpiffBpmnTask):
    """A service task run by a stone. Stays STARTED until the engine completes it."""

    def __init__(self, wf_spec, bpmn_id, stone: str, parameters: dict[str, str] | None = None,
                 namespace: str | None = None, properties: dict[str, str] | None = None, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.stone = stone
        # name -> Python expression evaluated against the task data at dispatch time
        self.parameters = dict(parameters or {})
        self.namespace = namespace or None
        self.properties = dict(properties or {})

    def _execute(self, task):
        return None


class StoneTaskConverter(SpiffBpmnTaskConverter):
    def to_dict(self, spec):
        dct = super().to_dict(spec)
        dct.update(stone=spec.stone, parameters=spec.parameters, namespace=spec.namespace,
                   properties=spec.properties)
        return dct


class StoneTaskParser(SpiffTaskParser):
    """Reads the stone from either modeler's extension.

    SpiffWorkflow: ``<spiffworkflow:serviceTaskOperator id="MachineStone">`` with
    ``<spiffworkflow:parameter id=".." value="<expression>"/>``.
    Camunda: ``camunda:type="external" camunda:topic="MachineStone"`` with
    ``camunda:inputParameter name="..">literal or ${variable}</camunda:inputParameter>``.
    Both may carry properties ``namespace``, ``monitorInterval``, ``monitorDeadline``.
    """

    def create_task(self):
        ext = self.parse_extensions()
        props = dict(ext.get("properties") or {})
        operator = ext.get("serviceTaskOperator")
        if operator is not None:
            stone = operator["name"]
            params = {k: v["value"] for k, v in operator["parameters"].items()}
        else:
            stone = self.node.get(f"{{{CAMUNDA_NS}}}topic")
            params = {}
            ns = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}
            ext_xpath = "./bpmn:extensionElements/camunda:"
            for node in self.node.xpath(ext_xpath + "inputOutput/camunda:inputParameter", namespaces=ns):
                params[node.get("name")] = _camunda_value_to_expression(node.text or "")
            for node in self.node.xpath(ext_xpath + "properties/camunda:property", namespaces=ns):
                props[node.get("name")] = node.get("value")
        if not stone:
            self.raise_validation_exception(
                "a service task must name its stone: <spiffworkflow:serviceTaskOperator id=\"Name\"> "
                "or camunda:type=\"external\" camunda:topic=\"Name\"")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", stone):
            self.raise_validation_exception(f"invalid stone name {stone!r}")
        for name, expression in params.items():
            try:
                check_expression(expression)
            except ModelInvalid as exc:
                self.raise_validation_exception(f"parameter {name!r}: {exc.message}")
        return self.spec_class(
            self.spec, self.bpmn_id, stone=stone, parameters=params,
            namespace=props.pop("namespace", None), properties=props,
            prescript=ext.get("preScript"), postscript=ext.get("postScript"), **self.bpmn_attributes)


def _camunda_value_to_expression(text: str) -> str:
    match = re.fullmatch(r"\s*\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\s*", text)
    return match.group(1) if match else repr(text)


class ModelParser(SpiffBpmnParser):
    # A copy: the parent's class-level dict must stay untouched for other users of spiff.
    OVERRIDE_PARSER_CLASSES = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
        full_tag("serviceTask"): (StoneTaskParser, StoneTask),
    }


def _make_serializer() -> BpmnWorkflowSerializer:
    config = dict(SPIFF_CONFIG)
    config[StoneTask] = StoneTaskConverter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


SERIALIZER = _make_serializer()

# ---------------------------------------------------------------- models

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


# Anywhere in the document, any case, any spacing: refusing here keeps entity expansion (billion
# laughs) and external entities (file reads) away from every parser.
_DTD_MARKUP = re.compile(r"<!\s*(doctype|entity)", re.IGNORECASE)


def read_xml(xml: bytes | str) -> etree._Element:
    """Parse BPMN XML: UTF-8 only (another encoding could hide markup), DOCTYPEs and entities refused
    before any parser sees the document."""
    if isinstance(xml, bytes):
        try:
            text = xml.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelInvalid(f"the BPMN document must be UTF-8 ({exc.reason} at byte {exc.start})") from exc
    else:
        text = xml
    if not text.strip():
        raise ModelInvalid("the BPMN document is empty")
    if _DTD_MARKUP.search(text):
        raise ModelInvalid("BPMN documents with a DOCTYPE or entity declarations are refused")
    try:
        return etree.fromstring(text.encode("utf-8"), _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ModelInvalid(f"BPMN does not parse: {exc}") from exc


@dataclass(frozen=True)
class StoneCall:
    """A service task that became ready: what the dispatcher needs to make a task row and a job."""

    spiff_task_id: str
    bpmn_id: str
    name: str
    stone: str
    namespace: str | None
    params: dict[str, Any]
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class CompiledModel:
    """A parsed BPMN process, ready to start runs. Built once per deployment."""

    process_id: str
    name: str
    spec: Any
    subprocess_specs: dict[str, Any]
    stones: list[str]

    def spec_json(self) -> str:
        return json.dumps({
            "process_id": self.process_id,
            "name": self.name,
            "stones": self.stones,
            "spec": SERIALIZER.to_dict(self.spec),
            "subprocess_specs": {k: SERIALIZER.to_dict(v) for k, v in self.subprocess_specs.items()},
        })

    @classmethod
    def from_spec_json(cls, text: str) -> CompiledModel:
        dct = json.loads(text)
        return cls(
            process_id=dct["process_id"],
            name=dct["name"],
            stones=dct["stones"],
            spec=SERIALIZER.from_dict(dct["spec"]),
            subprocess_specs={k: SERIALIZER.from_dict(v) for k, v in dct["subprocess_specs"].items()},
        )


def compile_bpmn(xml: bytes | str, process_id: str | None = None, filename: str = "model.bpmn") -> CompiledModel:
    """Parse and validate a BPMN document into a runnable model.

    ``process_id`` picks one executable process when the file has several; by default the
    only one, or the first marked ``isExecutable``.
    """
    root = read_xml(xml)
    parser = ModelParser()
    try:
        parser.add_bpmn_xml(root, filename)
        ids = parser.get_process_ids()
        if not ids:
            raise ModelInvalid("the BPMN document has no process")
        if process_id is None:
            executable = [p.get("id") for p in root.iter(full_tag("process")) if p.get("isExecutable") == "true"]
            process_id = executable[0] if executable else ids[0]
        elif process_id not in ids:
            raise ModelInvalid(f"process {process_id!r} not in the document (has {', '.join(ids)})")
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except (ValidationException, SpiffWorkflowException) as exc:
        raise ModelInvalid(f"BPMN is not valid: {exc}") from exc
    except etree.LxmlError as exc:
        raise ModelInvalid(f"BPMN is not valid: {exc}") from exc
    stones = sorted({
        s.stone for sp in [spec, *subprocess_specs.values()]
        for s in sp.task_specs.values() if isinstance(s, StoneTask)
    })
    name = next((p.get("name") for p in root.iter(full_tag("process")) if p.get("id") == process_id), None)
    _check_lengths(process_id, name, [spec, *subprocess_specs.values()])
    return CompiledModel(process_id, name or process_id, spec, subprocess_specs, stones)


MAX_NAME = 255  # what the database keeps of ids and names


def _check_lengths(process_id: str, name: str | None, specs: list) -> None:
    for what, value in (("process id", process_id), ("process name", name)):
        if value is not None and len(value) > MAX_NAME:
            raise ModelInvalid(f"the {what} is longer than {MAX_NAME} characters")
    for sp in specs:
        for task in sp.task_specs.values():
            if not isinstance(task, StoneTask):
                continue
            for what, value in (("id", task.bpmn_id), ("name", task.bpmn_name), ("stone", task.stone),
                                ("namespace", task.namespace)):
                if value is not None and len(value) + (8 if what == "namespace" else 0) > MAX_NAME:
                    raise ModelInvalid(f"service task {task.bpmn_id[:40]!r}: its {what} is longer than "
                                       f"{MAX_NAME - (8 if what == 'namespace' else 0)} characters")


# ---------------------------------------------------------------- runs

def check_variables(variables: Mapping[str, Any]) -> None:
    for key in variables:
        if not isinstance(key, str) or key.startswith("__") or key == _INTERNAL:
            raise InvalidInput(f"variable name {key!r} is reserved")


class Run:
    """One process's workflow. Not thread-safe: one writer per process at a time."""

    def __init__(self, model: CompiledModel, workflow: BpmnWorkflow):
        self.model = model
        self.wf = workflow
        self._scanned: Scan | None = None

    @classmethod
    def start(cls, model: CompiledModel, variables: Mapping[str, Any]) -> Run:
        check_variables(variables)
        wf = BpmnWorkflow(model.spec, model.subprocess_specs, script_engine=SCRIPT_ENGINE)
        # Tasks do not see wf.data; seeding the start task gives every task the variables.
        wf.get_tasks(state=TaskState.READY)[0].data.update(json.loads(json.dumps(variables)))
        return cls(model, wf)

    @classmethod
    def restore(cls, model: CompiledModel, state: str) -> Run:
        dct = json.loads(state)
        SERIALIZER.migrate(dct)
        # The spec is the deployment's, already restored: objects pass through ``restore``.
        dct["spec"] = model.spec
        dct["subprocess_specs"] = dict(model.subprocess_specs)
        wf = SERIALIZER.from_dict(dct)
        wf.script_engine = SCRIPT_ENGINE
        return cls(model, wf)

    def dump(self) -> str:
        SERIALIZER.registry._encoder_mode = True
        try:
            dct = SERIALIZER.to_dict(self.wf)
        finally:
            SERIALIZER.registry._encoder_mode = False
        del dct["spec"], dct["subprocess_specs"]
        dct[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
        return json.dumps(dct, cls=SERIALIZER._encoder_cls, separators=(",", ":"))

    # -- advancing

    def advance(self) -> list[StoneCall]:
        """Run the engine until it waits; return the stone tasks that became ready since last time."""
        self._scanned = None
        try:
            self.wf.do_engine_steps()
        except SpiffWorkflowException as exc:
            raise WorkflowError(str(exc)) from exc
        self._scanned = self._scan()
        return [self._dispatch(task) for task in self._scanned.ready]

    def _all_tasks(self):
        yield from self.wf.tasks.values()
        for sub in self.wf.subprocesses.values():
            yield from sub.tasks.values()

    def _scan(self) -> Scan:
        """One pass over the task tree (cheaper than one ``get_tasks`` per question)."""
        scan = Scan()
        started, cancelled, waiting, completed = (TaskState.STARTED, TaskState.CANCELLED, TaskState.WAITING,
                                                  TaskState.COMPLETED)
        for task in self._all_tasks():
            state, spec = task.state, task.task_spec
            if state == started:
                if isinstance(spec, StoneTask):
                    if not task.internal_data.get("dispatched"):
                        scan.ready.append(task)
                elif isinstance(spec, CallActivity) and "sub" not in task.internal_data:
                    scan.subs_started.append(task)
            elif state == cancelled:
                if isinstance(spec, StoneTask):
                    if task.internal_data.get("dispatched") and not task.internal_data.get("cancel_handled"):
                        scan.interrupted.append(task)
                elif isinstance(spec, CallActivity) and _open_sub(task):
                    scan.subs_ended.append(task)
            elif state == completed:
                if isinstance(spec, CallActivity) and _open_sub(task):
                    scan.subs_ended.append(task)
            elif state == waiting and isinstance(getattr(spec, "event_definition", None), TimerEventDefinition):
                due = _timer_due(task.internal_data.get("event_value"))
                if due is not None:
                    scan.timers.append(due)
        return scan

    def _dispatch(self, task) -> StoneCall:
        spec: StoneTask = task.task_spec
        namespace = spec.namespace
        template = None
        parent = task.parent
        if parent is not None and isinstance(parent.task_spec, MultiInstanceTask):
            index = task.internal_data.get("key_or_index")
            if namespace and index is not None:
                template, namespace = namespace, f"{namespace}{int(index) + 1}"
        params: dict[str, Any] = {}
        for ns in (template, namespace):
            if ns and isinstance(task.data.get(ns), Mapping):
                params.update(task.data[ns])
        try:
            for pname, expression in spec.parameters.items():
                params[pname] = SCRIPT_ENGINE.evaluate(task, expression)
        except SpiffWorkflowException as exc:
            raise WorkflowError(f"task {spec.bpmn_id}: {exc}") from exc
        if namespace:
            params.setdefault("namespace", namespace)
        task.internal_data["dispatched"] = True
        task.internal_data["namespace"] = namespace
        name = spec.bpmn_name or spec.bpmn_id
        return StoneCall(str(task.id), spec.bpmn_id, name, spec.stone, namespace, _jsonable(params),
                         dict(spec.properties))

    def complete(self, spiff_task_id: str, outputs: Mapping[str, Any] | None) -> bool:
        """Complete a waiting stone task with its outputs; False when it no longer waits."""
        self._scanned = None
        task = self.wf.get_task_from_id(UUID(spiff_task_id))
        if task is None or task.state != TaskState.STARTED:
            return False
        namespace = task.internal_data.get("namespace")
        if outputs:
            if namespace:
                current = task.data.get(namespace)
                merged = dict(current) if isinstance(current, Mapping) else {}
                merged.update(outputs)
                task.data[namespace] = merged
            else:
                task.data.update(outputs)
        task.complete()
        return True

    def catch_error(self, spiff_task_id: str, code: str) -> bool:
        """Route a stone's failure code to the task's own error boundary events (and no other).

        True when one caught it: the task is cancelled and the boundary path runs instead.
        """
        self._scanned = None
        task = self.wf.get_task_from_id(UUID(spiff_task_id))
        if task is None or task.state != TaskState.STARTED or task.parent is None:
            return False
        caught = False
        for sibling in task.parent.children:
            spec = sibling.task_spec
            definition = getattr(spec, "event_definition", None)
            if (isinstance(spec, BoundaryEvent) and isinstance(definition, ErrorEventDefinition)
                    and sibling.state == TaskState.WAITING and definition.code in (None, code)):
                event = BpmnEvent(ErrorEventDefinition(definition.name, code=code), payload={"code": code})
                spec.catch(sibling, event)
                spec._update(sibling)  # what SpiffWorkflow's own event manager does after a catch
                caught = True
                break
        return caught

    def fire_timers(self) -> None:
        """Let timer events whose time has come fire (the caller then advances)."""
        self._scanned = None
        self.wf.refresh_timers()

    def _scan_result(self) -> Scan:
        # advance() leaves its scan behind; anything else rescans.
        if self._scanned is None:
            self._scanned = self._scan()
        return self._scanned

    def next_timer(self) -> datetime | None:
        """When the earliest waiting timer event fires, if any."""
        timers = self._scan_result().timers
        return min(timers) if timers else None

    def cancelled_stone_tasks(self) -> list[str]:
        """Dispatched stone tasks the workflow cancelled (a timer or error boundary interrupted them)."""
        scan = self._scan_result()
        interrupted, scan.interrupted = scan.interrupted, []
        for task in interrupted:
            task.internal_data["cancel_handled"] = True
        return [str(task.id) for task in interrupted]

    def subprocess_changes(self) -> tuple[list[tuple[str, str]], list[tuple[int, bool]]]:
        """Call activities that began (``(spiff id, called process)``) and the ones that ended
        (``(sub-process pk, completed?)``) since last asked; see ``mark_subprocess``."""
        scan = self._scan_result()
        began = [(str(t.id), t.task_spec.spec) for t in scan.subs_started]
        ended = []
        for task in scan.subs_ended:
            task.internal_data["sub_closed"] = True
            ended.append((task.internal_data["sub"], task.state == TaskState.COMPLETED))
        scan.subs_started, scan.subs_ended = [], []
        return began, ended

    def mark_subprocess(self, spiff_task_id: str, process_pk: int) -> None:
        """Remember which process row stands for a call activity's sub-process."""
        self.wf.get_task_from_id(UUID(spiff_task_id)).internal_data["sub"] = process_pk

    # -- the Activiti-style face: variables and jumps

    def variables(self) -> dict[str, Any]:
        """The process variables: what the next tasks will see (the final data once completed)."""
        if self.wf.is_completed():
            return self.data
        merged: dict[str, Any] = {}
        for task in self.wf.get_tasks(state=TaskState.STARTED | TaskState.READY | TaskState.WAITING):
            merged.update(task.data)
        return merged or self.data

    def set_variables(self, values: Mapping[str, Any]) -> None:
        """Set variables where the workflow will read them: every task it is waiting on."""
        check_variables(values)
        self._scanned = None
        values = _jsonable(dict(values))
        frontier = self.wf.get_tasks(state=TaskState.STARTED | TaskState.READY | TaskState.WAITING)
        for task in frontier:
            task.data.update(values)
        if not frontier:
            self.wf.data.update(values)

    def activities(self) -> list[str]:
        """BPMN ids of the activities a jump may target: the process's tasks, call activities and
        sub-processes, not its events (a jump to the end event would end it) nor its gateways."""
        return sorted({t.bpmn_id for t in self.model.spec.task_specs.values() if _is_activity(t)})

    def active_stone_tasks(self) -> list[str]:
        """Spiff ids of the stone tasks the workflow is waiting on."""
        return [str(t.id) for t in self._all_tasks()
                if t.state == TaskState.STARTED and isinstance(t.task_spec, StoneTask)]

    def current_activities(self) -> list[str]:
        return [t.task_spec.bpmn_id for t in self.wf.get_tasks(state=TaskState.STARTED | TaskState.READY)
                if getattr(t.task_spec, "bpmn_id", None)]

    def jump_to(self, activity_id: str) -> None:
        """Leave the current activities and make ``activity_id`` the one ready to run.

        Backwards (a task already run) resets the workflow to it; forwards (a task still to
        come) skips the tasks between, which never run. The caller stops the stones' work.
        """
        self._scanned = None
        candidates = [t for t in self.wf.tasks.values()
                      if t.task_spec.bpmn_id == activity_id and _is_activity(t.task_spec)]
        if not candidates:
            raise InvalidInput(f"{activity_id[:100]!r} is not an activity of this process (activities: "
                               f"{', '.join(self.activities())})"[:300])
        target = max(candidates, key=lambda t: t.last_state_change)
        if target.has_state(TaskState.FINISHED_MASK | TaskState.STARTED | TaskState.READY):
            self.wf.reset_from_task_id(target.id)
            return
        path, node = [], target.parent
        while node is not None and not node.has_state(TaskState.STARTED | TaskState.READY | TaskState.WAITING):
            path.append(node)
            node = node.parent
        if node is None:
            raise InvalidInput(f"activity {activity_id!r} cannot be reached from where the process is")
        for task in [node, *reversed(path)]:
            task.internal_data["skipped_by_jump"] = True
            task._set_state(TaskState.COMPLETED)
        target.data = dict(node.data)
        target._set_state(TaskState.READY)

    def cancel(self) -> list[str]:
        """Cancel the workflow; return the spiff ids of stone tasks that were in flight."""
        self._scanned = None
        cancelled = self.wf.cancel()
        return [str(t.id) for t in cancelled
                if isinstance(t.task_spec, StoneTask) and t.internal_data.get("dispatched")]

    @property
    def completed(self) -> bool:
        return self.wf.is_completed()

    @property
    def data(self) -> dict[str, Any]:
        """The final data: the workflow's own, or the last completed task's."""
        if self.wf.data:
            return dict(self.wf.data)
        last = self.wf.last_task
        return dict(last.data) if last is not None else {}


@dataclass
class Scan:
    ready: list = field(default_factory=list)  # stone tasks to dispatch
    interrupted: list = field(default_factory=list)  # dispatched stone tasks the workflow cancelled
    timers: list[datetime] = field(default_factory=list)  # when waiting timer events fire
    subs_started: list = field(default_factory=list)  # call activities whose sub-process began
    subs_ended: list = field(default_factory=list)  # and those whose sub-process ended


def _is_activity(spec) -> bool:
    if not getattr(spec, "bpmn_id", None):
        return False  # SpiffWorkflow's own structural specs
    is_task = type(spec).__name__.endswith("Task")  # send and receive tasks are events underneath
    return is_task or not isinstance(spec, (CatchingEvent, ThrowingEvent, ExclusiveGateway, InclusiveGateway,
                                            ParallelGateway, EventBasedGateway))


def _open_sub(task) -> bool:
    return "sub" in task.internal_data and not task.internal_data.get("sub_closed")


class WorkflowError(InvalidInput):
    """The model failed while running (an expression raised, a gateway had no way out)."""

    code = "workflow_error"


def _timer_due(value: Any) -> datetime | None:
    """A timer event's due time as naive UTC (SpiffWorkflow keeps an ISO string)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)
    except ValueError:
        return None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def variables_from_state(state: str | None) -> dict[str, Any]:
    """``Run.variables()`` read straight from a stored state, without restoring the workflow.

    SpiffWorkflow stores each task's data as a delta from its parent's: rebuilt along the chain.
    """
    if not state:
        return {}
    dct = json.loads(state)
    if dct.get("completed"):
        return dct.get("data") or {}
    tasks = dct.get("tasks", {})
    cache: dict[str, dict[str, Any]] = {}

    def data_of(task_id: str) -> dict[str, Any]:
        chain = []
        node = task_id
        while node is not None and node not in cache:
            chain.append(node)
            node = tasks[node].get("parent") if node in tasks else None
        data = dict(cache[node]) if node is not None else {}
        for tid in reversed(chain):
            task = tasks[tid]
            delta = task.get("delta")
            if delta and task.get("parent") is not None:
                data = {**data, **(delta.get("updates") or {})}
                for key in delta.get("deletions") or ():
                    data.pop(key, None)
            else:
                data = dict(task.get("data") or {})
            cache[tid] = data
        return cache[task_id]

    frontier = int(TaskState.STARTED | TaskState.READY | TaskState.WAITING)
    merged: dict[str, Any] = {}
    for tid, task in tasks.items():
        if task.get("state", 0) & frontier:
            merged.update(data_of(tid))
    if not merged and dct.get("last_task") in tasks:
        merged = data_of(dct["last_task"])
    return merged
