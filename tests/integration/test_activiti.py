"""The second seed's Activiti-style face: runtime, query and repository APIs, over the same processes."""

from __future__ import annotations

import io
import time
from urllib.parse import quote

import pytest

from api import create_app
from orchestrator.status import StatusReport
from tests.bpmn import HEAD, chain, service_task
from tests.conftest import example
from tests.integration.conftest import queued_jobs

ABC = chain("abc", ("a", "NoopStone", {}), ("b", "NoopStone", {}), ("c", "NoopStone", {}))

CALL = (HEAD.replace('id="defs"', 'id="defs" xmlns:camunda="http://camunda.org/schema/1.0/bpmn"')
        + '<bpmn:process id="outer" isExecutable="true"><bpmn:laneSet id="ls"><bpmn:lane id="ops" name="Operators">'
          '<bpmn:flowNodeRef>approve</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet><bpmn:startEvent id="s"/>'
        + service_task("vpc", "NoopStone")
        + '<bpmn:callActivity id="call_vm" name="make a vm" calledElement="inner"/>'
          '<bpmn:userTask id="approve" name="approve" camunda:assignee="alice" camunda:candidateUsers="bob"'
          ' camunda:candidateGroups="admins"/><bpmn:endEvent id="e"/>'
          '<bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="vpc"/>'
          '<bpmn:sequenceFlow id="f2" sourceRef="vpc" targetRef="call_vm"/>'
          '<bpmn:sequenceFlow id="f3" sourceRef="call_vm" targetRef="e"/></bpmn:process>'
          '<bpmn:process id="inner" isExecutable="true"><bpmn:startEvent id="s2"/>'
        + service_task("vm", "NoopStone")
        + '<bpmn:endEvent id="e2"/><bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="vm"/>'
          '<bpmn:sequenceFlow id="g2" sourceRef="vm" targetRef="e2"/></bpmn:process></bpmn:definitions>')


@pytest.fixture
def client(service, settings):
    return create_app({"TESTING": True, "SETTINGS": settings}, service=service).test_client()


def deploy(client, xml: str | bytes, key: str | None = None) -> dict:
    data = {"file": (io.BytesIO(xml.encode() if isinstance(xml, str) else xml), "m.bpmn")}
    if key:
        data["key"] = key
    r = client.post("/repository/deployments", data=data, content_type="multipart/form-data")
    assert r.status_code == 201, r.json
    return r.json


def start(client, key="abc", status=201, **body):
    r = client.post("/runtime/process-instances", json={"processDefinitionKey": key, **body})
    assert r.status_code == status, r.json
    return r.json


def finish(service, pid: str, name: str | None = None):
    """Play the worker's part for the open tasks (or the one named)."""
    for t in service.list_tasks(pid):
        if t.status in (None, "produce.success") and (name is None or t.name == name):
            service.publish(service.apply_reports(
                StatusReport(process=t.process_pk, task=t.pk, attempt=t.attempt, status=s, at=time.time())
                for s in ("start.begin", "start.success", "monitor.begin", "monitor.success")))


def count(service, table):
    with service.store.read() as tx:
        return tx.cx.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


def test_start_by_key_or_definition_id_with_typed_variables(client, service):
    deploy(client, ABC)
    p = start(client, businessKey="order-1", tenantId="t1",
              variables=[{"name": "size", "type": "integer", "value": 3}, {"name": "zone", "value": "a"}])
    assert set(p) >= {"id", "url", "businessKey", "suspended", "processDefinitionUrl", "activityId", "tenantId"}
    assert (p["businessKey"], p["tenantId"], p["suspended"], p["activityId"]) == ("order-1", "t1", False, "a")
    assert p["url"].endswith(f"/runtime/process-instances/{p['id']}")
    definition = p["processDefinitionId"]
    assert definition.startswith("abc:1:")
    again = client.post("/runtime/process-instances", json={"processDefinitionId": definition})
    assert again.status_code == 201
    assert service.get_process(p["id"]).process_name == "order-1"  # the same process on both faces
    variables = client.get(f"/runtime/process-instances/{p['id']}/variables").json
    assert variables == [{"name": "size", "type": "integer", "value": 3, "scope": "local"},
                         {"name": "zone", "type": "string", "value": "a", "scope": "local"}]


@pytest.mark.parametrize("body, message", [
    ({"processDefinitionKey": "nope"}, "nope"),
    ({"processDefinitionId": "abc:9:nope"}, "nope"),
    ({}, "processDefinitionId or processDefinitionKey"),
    ({"processDefinitionKey": "abc", "variables": [{"name": "n", "type": "integer", "value": "x"}]}, "integer"),
    ({"processDefinitionKey": "abc", "variables": [{"name": "n", "type": "long", "value": 2**70}]}, "long"),
    ({"processDefinitionKey": "abc", "variables": [{"name": "d", "type": "date", "value": "yesterday"}]}, "date"),
    ({"processDefinitionKey": "abc", "variables": [{"name": "b", "type": "boolean", "value": 1}]}, "boolean"),
    ({"processDefinitionKey": "abc", "variables": [{"name": "x", "type": "blob", "value": 1}]}, "unknown type"),
    ({"processDefinitionKey": "abc", "variables": {"a": 1}}, "list"),
    ({"processDefinitionKey": "abc", "variables": [{"type": "string", "value": "v"}]}, "name"),
    ({"processDefinitionKey": "abc", "businessKey": 7}, "businessKey"),
])
def test_bad_starts_answer_400_and_write_nothing(client, service, redis_client, body, message):
    deploy(client, ABC)
    r = client.post("/runtime/process-instances", json=body)
    assert r.status_code == 400 and message in r.json["message"], r.json
    assert count(service, "processes") == 0 and redis_client.llen("stone.NoopStone") == 0


def test_list_filters_paging_and_sorting(client, service):
    deploy(client, ABC)
    deploy(client, example("noop_chain.bpmn"))
    a = start(client, businessKey="k1", tenantId="acme")
    b = start(client, businessKey="k2", tenantId="acme-eu")
    c = start(client, "noop_chain", businessKey="k1")

    def ids(**params):
        r = client.get("/runtime/process-instances", query_string=params)
        assert r.status_code == 200, r.json
        return [p["id"] for p in r.json["data"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids(businessKey="k1") == [a["id"], c["id"]]
    assert ids(processDefinitionKey="noop_chain") == [c["id"]]
    assert ids(processDefinitionId=a["processDefinitionId"]) == [a["id"], b["id"]]
    assert ids(tenantId="acme") == [a["id"]]
    assert ids(tenantIdLike="acme%") == [a["id"], b["id"]]
    assert ids(withoutTenantId="true") == [c["id"]]
    assert ids(id=b["id"]) == [b["id"]]
    assert ids(id="nonsense") == []
    assert ids(sort="id", order="desc") == [c["id"], b["id"], a["id"]]
    assert ids(sort="processDefinitionKey", order="desc")[0] == c["id"]
    page = client.get("/runtime/process-instances", query_string={"start": 1, "size": 1}).json
    assert (page["total"], page["start"], page["size"], page["sort"], page["order"]) == (3, 1, 1, "id", "asc")
    assert client.get("/runtime/process-instances?size=100000").json["size"] == 3  # clamped, not refused
    for bad in ({"sort": "name"}, {"order": "up"}, {"suspended": "maybe"}, {"size": "0"}, {"start": "-1"},
                {"size": "x"}):
        r = client.get("/runtime/process-instances", query_string=bad)
        assert r.status_code == 400 and set(r.json) == {"code", "message"}, bad
    finish(service, a["id"])
    finish(service, a["id"])
    finish(service, a["id"])
    assert ids() == [b["id"], c["id"]]  # a finished process leaves the runtime list
    assert client.get(f"/runtime/process-instances/{a['id']}").status_code == 404
    with_vars = client.get("/runtime/process-instances", query_string={"includeProcessVariables": "true"}).json
    assert all(isinstance(p["variables"], list) for p in with_vars["data"])


def test_query_with_variable_filters(client, service):
    deploy(client, ABC)
    p1 = start(client, variables=[{"name": "n", "type": "long", "value": 5},
                                  {"name": "region", "value": "eu-west"},
                                  {"name": "on", "type": "boolean", "value": True},
                                  {"name": "when", "type": "date", "value": "2026-01-02T00:00:00"}])
    p2 = start(client, variables=[{"name": "n", "type": "long", "value": 50}, {"name": "region", "value": "us"}])

    def ids(*filters, **body):
        r = client.post("/query/process-instances", json={"variables": list(filters), **body})
        assert r.status_code == 200, r.json
        return [p["id"] for p in r.json["data"]]

    assert ids({"name": "n", "value": 5, "operation": "equals", "type": "long"}) == [p1["id"]]
    assert ids({"name": "n", "value": 5, "operation": "notEquals", "type": "long"}) == [p2["id"]]
    assert ids({"name": "n", "value": 10, "operation": "greaterThan", "type": "long"}) == [p2["id"]]
    assert ids({"name": "n", "value": 50, "operation": "greaterThanOrEquals", "type": "integer"}) == [p2["id"]]
    assert ids({"name": "n", "value": 50, "operation": "lessThan", "type": "double"}) == [p1["id"]]
    assert ids({"name": "n", "value": 5, "operation": "lessThanOrEquals"}) == [p1["id"]]
    assert ids({"name": "region", "value": "eu%", "operation": "like"}) == [p1["id"]]
    assert ids({"name": "on", "value": True, "type": "boolean"}) == [p1["id"]]
    assert ids({"name": "when", "value": "2026-01-01T00:00:00", "operation": "greaterThan", "type": "date"}) \
        == [p1["id"]]
    assert ids({"name": "n", "value": 1, "operation": "greaterThan"}, {"name": "region", "value": "us"}) \
        == [p2["id"]]
    assert ids({"name": "n", "value": 1, "operation": "greaterThan"}, businessKey="none") == []
    for bad in ({"name": "n", "value": 1, "operation": "about"}, {"name": "n", "value": 1, "type": "blob"},
                {"name": "n", "value": 1, "operation": "like"}, {"value": 1},
                {"name": "on", "value": True, "operation": "greaterThan"}):
        r = client.post("/query/process-instances", json={"variables": [bad]})
        assert r.status_code == 400, bad
    assert client.post("/query/process-instances", json={"sort": "nope"}).status_code == 400


def test_suspended_processes_dispatch_nothing_until_activated(client, service, redis_client):
    deploy(client, ABC)
    p = start(client)
    url = f"/runtime/process-instances/{p['id']}"
    r = client.put(url, json={"action": "suspend"})
    assert r.status_code == 200 and r.json["suspended"] is True
    assert client.put(url, json={"action": "suspend"}).status_code == 409
    finish(service, p["id"])  # task a completes while suspended
    assert [t.name for t in service.list_tasks(p["id"])] == ["a"]
    assert len(queued_jobs(redis_client, "NoopStone")) == 1
    r = client.put(url, json={"action": "activate"})
    assert r.status_code == 200 and r.json["suspended"] is False and r.json["activityId"] == "b"
    assert [t.name for t in service.list_tasks(p["id"])] == ["a", "b"]
    assert client.put(url, json={"action": "activate"}).status_code == 409
    assert client.put(url, json={"action": "pause"}).status_code == 400
    assert client.put("/runtime/process-instances/999", json={"action": "suspend"}).status_code == 404
    assert [x["id"] for x in client.get("/runtime/process-instances?suspended=false").json["data"]] == [p["id"]]


def test_delete_cancels_the_process(client, service):
    deploy(client, ABC)
    p = start(client)
    assert client.delete(f"/runtime/process-instances/{p['id']}").status_code == 204
    assert service.get_process(p["id"]).status == "canceling"
    assert client.get(f"/runtime/process-instances/{p['id']}").status_code == 404
    assert client.delete(f"/runtime/process-instances/{p['id']}").status_code == 404
    assert client.delete("/runtime/process-instances/abc").status_code == 404


def test_variables_create_update_and_read(client, service):
    deploy(client, ABC)
    p = start(client, variables=[{"name": "a", "type": "integer", "value": 1}])
    url = f"/runtime/process-instances/{p['id']}/variables"
    r = client.post(url, json=[{"name": "b", "type": "string", "value": "x"}])
    assert r.status_code == 201 and r.json == [{"name": "b", "type": "string", "value": "x", "scope": "local"}]
    assert client.post(url, json=[{"name": "a", "type": "integer", "value": 2}]).status_code == 409
    assert client.put(url, json=[{"name": "a", "type": "integer", "value": 2},
                                 {"name": "c", "type": "json", "value": {"k": [1]}}]).status_code == 201
    r = client.put(f"{url}/a", json={"name": "a", "type": "integer", "value": 3})
    assert r.status_code == 200 and r.json["value"] == 3
    assert client.put(f"{url}/zzz", json={"type": "string", "value": "v"}).status_code == 404
    assert client.put(f"{url}/a", json={"name": "other", "value": 1}).status_code == 400
    assert client.put(f"{url}/a", json={"type": "integer", "value": "three"}).status_code == 400
    assert client.get(f"{url}/c").json["value"] == {"k": [1]}
    got = {v["name"]: (v["type"], v["value"]) for v in client.get(url).json}
    assert got == {"a": ("integer", 3), "b": ("string", "x"), "c": ("json", {"k": [1]})}
    # set where the workflow reads them: once task a is done they have flowed on to task b
    finish(service, p["id"], "a")
    assert client.get(f"/runtime/process-instances/{p['id']}").json["activityId"] == "b"
    assert {v["name"]: v["value"] for v in client.get(url).json} == {"a": 3, "b": "x", "c": {"k": [1]}}
    assert client.get("/runtime/process-instances/999/variables").status_code == 404


def test_jump_to_activity_forward_and_back(client, service, redis_client):
    deploy(client, ABC)
    p = start(client)
    url = f"/runtime/process-instances/{p['id']}"
    r = client.put(url, json={"action": "jumpToActivity", "activityId": "c", "jumpOrigin": "ops"})
    assert r.status_code == 200 and r.json["activityId"] == "c"
    tasks = {t.name: t for t in service.list_tasks(p["id"]) if t.event == "start"}
    assert tasks["a"].status == "canceled" and "b" not in tasks and tasks["c"].status == "produce.success"
    assert redis_client.exists(f"orch:revoked:{tasks['a'].pk}")
    r = client.put(url, json={"action": "jumpToActivity", "activityId": "a"})
    assert r.status_code == 200 and r.json["activityId"] == "a"
    a = service.get_task(str(tasks["a"].pk))
    assert (a.status, a.attempt) == ("produce.success", 2)  # run again, as a new attempt of its row
    assert client.put(url, json={"action": "jumpToActivity", "activityId": "nowhere"}).status_code == 400
    assert client.put(url, json={"action": "jumpToActivity"}).status_code == 400
    for _ in range(4):
        finish(service, p["id"])
    assert service.get_process(p["id"]).status == "success"


def test_call_activities_are_sub_processes(client, service):
    deploy(client, CALL, key="outer")
    p = start(client, "outer")
    finish(service, p["id"])  # vpc done: the call activity starts its sub-process
    subs = client.get("/runtime/process-instances", query_string={"superProcessInstanceId": p["id"]}).json["data"]
    assert len(subs) == 1
    sub = subs[0]
    sup = client.get("/runtime/process-instances", query_string={"subProcessInstanceId": sub["id"]}).json["data"]
    assert [x["id"] for x in sup] == [p["id"]]
    everything = client.get("/runtime/process-instances").json["data"]
    assert {x["id"] for x in everything} == {p["id"], sub["id"]}
    only_top = client.get("/runtime/process-instances?excludeSubprocesses=true").json["data"]
    assert [x["id"] for x in only_top] == [p["id"]]
    finish(service, p["id"])  # the vm task inside the sub-process
    assert service.get_process(sub["id"]).status == "success"
    assert service.get_process(p["id"]).status == "success"


def test_assigncheck_and_involved_user(client, service):
    deploy(client, CALL, key="outer")
    deploy(client, ABC)
    p = start(client, "outer")
    start(client)
    r = client.post("/runtime/ext/assigncheck", json={"processDefinitionKey": "outer", "taskId": "t9"})
    assert r.status_code == 200
    info = r.json["assignInfo"]
    assert info["taskId"] == "t9"
    (item,) = info["assignInfoItems"]
    assert item["activityId"] == "approve"
    assert {(x["id"], x["type"]) for x in item["participants"]} == {
        ("alice", "assignee"), ("bob", "candidateUser"), ("admins", "candidateGroup"), ("ops", "lane")}
    assert client.post("/runtime/ext/assigncheck", json={"processDefinitionId": p["processDefinitionId"],
                                                          "activityId": "approve"}).status_code == 200
    assert client.post("/runtime/ext/assigncheck", json={"processDefinitionKey": "outer",
                                                          "activityId": "vpc"}).status_code == 404
    assert client.post("/runtime/ext/assigncheck", json={"processDefinitionKey": "nope"}).status_code == 404
    assert client.post("/runtime/ext/assigncheck", json={}).status_code == 400
    involved = client.get("/runtime/process-instances", query_string={"involvedUser": "bob"}).json["data"]
    assert [x["id"] for x in involved] == [p["id"]]
    assert client.get("/runtime/process-instances?involvedUser=mallory").json["total"] == 0


def test_repository_deployments_and_definitions(client, service):
    d1 = deploy(client, ABC)
    d2 = deploy(client, chain("abc", ("only", "NoopStone", {})))
    deploy(client, example("noop_chain.bpmn"))
    assert client.get(f"/repository/deployments/{d1['id']}").json["id"] == d1["id"]
    assert client.get("/repository/deployments").json["total"] == 3
    defs = client.get("/repository/process-definitions", query_string={"key": "abc"}).json
    assert [(d["key"], d["version"]) for d in defs["data"]] == [("abc", 1), ("abc", 2)]
    latest = client.get("/repository/process-definitions", query_string={"latest": "true"}).json["data"]
    assert sorted((d["key"], d["version"]) for d in latest) == [("abc", 2), ("noop_chain", 1)]
    assert client.get("/repository/process-definitions?version=1&key=abc").json["total"] == 1
    one = defs["data"][1]
    assert one["deploymentId"] == d2["id"]
    got = client.get(f"/repository/process-definitions/{quote(one['id'], safe='')}")
    assert got.status_code == 200 and got.json["key"] == "abc"
    xml = client.get(f"/repository/process-definitions/{quote(one['id'], safe='')}/resourcedata")
    assert xml.status_code == 200 and xml.mimetype == "application/xml" and b'id="only"' in xml.data
    # the same data as /model
    assert {m["key"] for m in client.get("/model").json} == {"abc", "noop_chain"}
    assert client.get("/repository/process-definitions/abc:1:missing").status_code == 404
    assert client.get("/repository/process-definitions?latest=maybe").status_code == 400
    assert client.get("/repository/process-definitions?sort=colour").status_code == 400
    # a deployment a running process uses cannot go; once the process is over it can
    p = start(client)
    assert p["processDefinitionId"].endswith(d2["id"])
    r = client.delete(f"/repository/deployments/{d2['id']}")
    assert r.status_code == 409
    finish(service, p["id"])
    assert client.delete(f"/repository/deployments/{d2['id']}").status_code == 204
    assert client.get(f"/repository/deployments/{d2['id']}").status_code == 404
    assert client.delete(f"/repository/deployments/{d2['id']}").status_code == 404
    assert client.post("/repository/deployments", data=b"<x/>", content_type="application/xml").status_code == 415


def test_definition_ids_must_name_the_right_key_and_version(client, service):
    dep = deploy(client, ABC)
    good = f"abc:1:{dep['id']}"
    assert client.get(f"/repository/process-definitions/{quote(good, safe='')}").status_code == 200
    for wrong in (f"abc:2:{dep['id']}", f"zz:1:{dep['id']}"):
        assert client.get(f"/repository/process-definitions/{quote(wrong, safe='')}").status_code == 404
        assert client.post("/runtime/process-instances", json={"processDefinitionId": wrong}).status_code == 400
    assert count(service, "processes") == 0


def test_like_filters_escape_the_same_on_every_database(client, service):
    deploy(client, ABC)
    start(client, tenantId="a_b")
    start(client, tenantId="axb")
    r = client.get("/runtime/process-instances", query_string={"tenantIdLike": "a\\_b"})
    assert r.status_code == 200 and [p["tenantId"] for p in r.json["data"]] == ["a_b"]
