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
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.specs.mixins.service_task import ServiceTask as ServiceTaskMixin
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


def read_xml(xml: bytes | str) -> etree._Element:
    """Parse BPMN XML, refusing DOCTYPEs and entities before anything else sees them."""
    data = xml.encode() if isinstance(xml, str) else xml
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise ModelInvalid("BPMN documents with a DOCTYPE or entity declarations are refused")
    try:
        return etree.fromstring(data, _XML_PARSER)
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
    return CompiledModel(process_id, name or process_id, spec, subprocess_specs, stones)


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
        self._scanned: tuple[list, list[datetime]] | None = None

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
        ready, interrupted, timers = self._scan()
        self._scanned = (interrupted, timers)
        return [self._dispatch(task) for task in ready]

    def _all_tasks(self):
        yield from self.wf.tasks.values()
        for sub in self.wf.subprocesses.values():
            yield from sub.tasks.values()

    def _scan(self) -> tuple[list, list, list[datetime]]:
        """One pass over the task tree (cheaper than one ``get_tasks`` per question): stone tasks
        to dispatch, dispatched ones the workflow cancelled, and the waiting timers' due times."""
        ready, interrupted, timers = [], [], []
        started, cancelled, waiting = TaskState.STARTED, TaskState.CANCELLED, TaskState.WAITING
        for task in self._all_tasks():
            state = task.state
            if state == started:
                if isinstance(task.task_spec, StoneTask) and not task.internal_data.get("dispatched"):
                    ready.append(task)
            elif state == cancelled:
                if (isinstance(task.task_spec, StoneTask) and task.internal_data.get("dispatched")
                        and not task.internal_data.get("cancel_handled")):
                    interrupted.append(task)
            elif state == waiting and isinstance(getattr(task.task_spec, "event_definition", None),
                                                 TimerEventDefinition):
                due = _timer_due(task.internal_data.get("event_value"))
                if due is not None:
                    timers.append(due)
        return ready, interrupted, timers

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

    def _scan_result(self) -> tuple[list, list[datetime]]:
        # advance() leaves its scan behind; anything else rescans.
        if self._scanned is None:
            _, interrupted, timers = self._scan()
            self._scanned = (interrupted, timers)
        return self._scanned

    def next_timer(self) -> datetime | None:
        """When the earliest waiting timer event fires, if any."""
        timers = self._scan_result()[1]
        return min(timers) if timers else None

    def cancelled_stone_tasks(self) -> list[str]:
        """Dispatched stone tasks the workflow cancelled (a timer or error boundary interrupted them)."""
        interrupted = self._scan_result()[0]
        for task in interrupted:
            task.internal_data["cancel_handled"] = True
        self._scanned = ([], self._scanned[1]) if self._scanned else None
        return [str(task.id) for task in interrupted]

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
