"""The SpiffWorkflow wrapper: serialize, restore and compare at every step."""

from __future__ import annotations

import pytest

from orchestrator.engine import CompiledModel, Run, compile_bpmn
from orchestrator.errors import InvalidInput, ModelInvalid
from tests.bpmn import HEAD, chain, service_task
from tests.conftest import example

CLUSTER_VARS = {"slaveNum": "6", "vpcId": "vpc-1", "subnetId": "subnet-1", "imageId": "ami-1", "projectId": "p",
                "master-1a": {"instanceType": "m2.large"}, "slave-": {"instanceType": "m2.large"}}


def drive(model: CompiledModel, variables: dict, outputs=lambda call: {"done": call.name}):
    """Run to the end, completing every stone task; after every step dump, restore and compare."""
    run = Run.start(model, variables)
    rounds = []
    calls = run.advance()
    while calls:
        state = run.dump()
        restored = Run.restore(model, state)
        assert restored.dump() == state
        run = restored
        rounds.append(calls)
        for call in calls:
            assert run.complete(call.spiff_task_id, outputs(call))
        calls = run.advance()
    state = run.dump()
    assert Run.restore(model, state).dump() == state
    return run, rounds


def test_sequential_chain_runs_in_order():
    model = compile_bpmn(example("noop_chain.bpmn"))
    assert model.stones == ["NoopStone"]
    run, rounds = drive(model, {})
    assert [[c.name for c in r] for r in rounds] == [[f"step {i}"] for i in range(1, 6)]
    assert run.completed


def test_spec_survives_its_own_serialization():
    model = CompiledModel.from_spec_json(compile_bpmn(example("noop_chain.bpmn")).spec_json())
    run, rounds = drive(model, {})
    assert run.completed and len(rounds) == 5


def test_multi_instance_gives_six_parallel_slaves_with_namespaces():
    model = compile_bpmn(example("provision_cluster.bpmn"))
    run, rounds = drive(model, CLUSTER_VARS, outputs=lambda c: {"instanceId": f"i-{c.namespace}"})
    assert [c.namespace for c in rounds[0]] == ["master-1a"]
    slaves = rounds[1]
    assert sorted(c.namespace for c in slaves) == [f"slave-{i}" for i in range(1, 7)]
    # each slave is seeded from the "slave-" template variable, plus its declared parameters
    assert all(c.params["instanceType"] == "m2.large" and c.params["vpcId"] == "vpc-1" for c in slaves)
    assert rounds[0][0].params["imageId"] == "ami-1"
    data = run.data
    assert {data[f"slave-{i}"]["instanceId"] for i in range(1, 7)} == {f"i-slave-{i}" for i in range(1, 7)}
    assert data["master-1a"] == {"instanceType": "m2.large", "instanceId": "i-master-1a"}


@pytest.mark.parametrize("billing, expected_rounds", [("yes", 3), ("no", 2)])
def test_parallel_gateway_and_exclusive_choice(billing, expected_rounds):
    model = compile_bpmn(example("parallel_disks.bpmn"))
    run, rounds = drive(model, {"imageId": "ami-1", "vmOutputs": {"ip": "10.0.0.1"}, "billing": billing})
    assert sorted(c.namespace for c in rounds[1]) == ["disk-a", "disk-b"]
    assert len(rounds) == expected_rounds
    assert run.data["disk-a"] == {"done": "disk a"} and run.data["disk-b"] == {"done": "disk b"}
    # camunda inputParameter: ${var} resolves, a literal stays a string
    assert rounds[0][0].params["outputs"] == {"ip": "10.0.0.1"}
    assert {c.params["size"] for c in rounds[1]} == {"100", "200"}


def test_complete_is_guarded_by_state():
    model = compile_bpmn(example("noop_chain.bpmn"))
    run = Run.start(model, {})
    call = run.advance()[0]
    assert run.complete(call.spiff_task_id, {"a": 1})
    assert not run.complete(call.spiff_task_id, {"a": 2})  # no longer STARTED: nothing overwritten
    nxt = run.advance()[0]
    assert run.wf.get_task_from_id(__import__("uuid").UUID(call.spiff_task_id)).data["a"] == 1
    assert nxt.name == "step 2"


def test_a_dispatched_task_is_not_returned_twice():
    model = compile_bpmn(example("noop_chain.bpmn"))
    run = Run.start(model, {})
    assert len(run.advance()) == 1
    assert run.advance() == []
    restored = Run.restore(model, run.dump())
    assert restored.advance() == []


@pytest.mark.parametrize("expression", [
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os').system('true')",
    "open('/etc/passwd').read()",
])
def test_unsafe_expressions_are_refused(expression):
    xml = chain("p", ("t", "NoopStone", {"x": expression.replace("'", "&apos;")}))
    if "__" in expression:
        with pytest.raises(ModelInvalid):
            compile_bpmn(xml)
    else:  # compiles, but ``open`` is not among the builtins an expression sees
        model = compile_bpmn(xml)
        with pytest.raises(InvalidInput, match="open"):
            Run.start(model, {}).advance()


def test_doctype_and_entities_are_refused_before_parsing():
    xml = chain("p", ("t", "NoopStone", {}))
    evil = xml.replace("<bpmn:definitions", '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<bpmn:definitions')
    with pytest.raises(ModelInvalid, match="DOCTYPE"):
        compile_bpmn(evil)


@pytest.mark.parametrize("xml, message", [
    ("not xml at all", "does not parse"),
    (HEAD + "</bpmn:definitions>", "no process"),
    (HEAD + '<bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s"/>'
     '<bpmn:serviceTask id="t"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="t"/>'
     "</bpmn:process></bpmn:definitions>", "must name its stone"),
])
def test_invalid_models_say_why(xml, message):
    with pytest.raises(ModelInvalid, match=message):
        compile_bpmn(xml)


def test_reserved_variable_names_are_refused():
    model = compile_bpmn(example("noop_chain.bpmn"))
    with pytest.raises(InvalidInput):
        Run.start(model, {"__builtins__": {}})


def test_namespace_property_and_parameters_reach_the_call():
    xml = (HEAD + '<bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s"/>'
           + service_task("vm", "NoopStone", {"size": "int(size) * 2"}, {"namespace": "vm-1"})
           + '<bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="vm"/>'
           '<bpmn:sequenceFlow id="f2" sourceRef="vm" targetRef="e"/></bpmn:process></bpmn:definitions>')
    run = Run.start(compile_bpmn(xml), {"size": "21", "vm-1": {"zone": "a"}})
    (call,) = run.advance()
    assert call.namespace == "vm-1"
    assert call.params == {"zone": "a", "size": 42, "namespace": "vm-1"}
    run.complete(call.spiff_task_id, {"id": "i-1"})
    run.advance()
    assert run.completed and run.data["vm-1"] == {"zone": "a", "id": "i-1"}


def test_variables_read_from_the_stored_state_match_the_live_workflow():
    from orchestrator.engine import variables_from_state

    model = compile_bpmn(example("provision_cluster.bpmn"))
    run = Run.start(model, CLUSTER_VARS)
    calls = run.advance()
    while calls:
        assert variables_from_state(run.dump()) == run.variables()
        for call in calls:
            run.complete(call.spiff_task_id, {"id": call.namespace})
        run.set_variables({"extra": len(calls)})
        assert variables_from_state(run.dump())["extra"] == len(calls)
        calls = run.advance()
    assert variables_from_state(run.dump()) == run.variables() == run.data


def test_names_longer_than_the_database_keeps_are_refused():
    long = "x" * 300
    with pytest.raises(ModelInvalid, match="process id"):
        compile_bpmn(chain(long, ("t", "NoopStone", {})))
    with pytest.raises(ModelInvalid, match="its id"):
        compile_bpmn(chain("p", (long, "NoopStone", {})))
    with pytest.raises(ModelInvalid, match="stone"):
        compile_bpmn(chain("p", ("t", "S" * 300, {})))


def test_public_ids_are_ascii_digits_only():
    from orchestrator.errors import NotFound
    from orchestrator.service import parse_public_id

    assert parse_public_id("42", "process") == 42
    for bad in ("¹", "١٢", "4²", "1e3", "-1", "9" * 19, ""):
        with pytest.raises(NotFound):
            parse_public_id(bad, "process")
