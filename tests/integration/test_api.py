"""The first seed's REST face, against a real database and a real Redis."""

from __future__ import annotations

import json

import pytest

from api import create_app
from tests.bpmn import chain
from tests.conftest import example


@pytest.fixture
def client(service, settings):
    app = create_app({"TESTING": True, "SETTINGS": settings}, service=service)
    return app.test_client()


def deploy(client, name="noop_chain.bpmn", key=None):
    data = {"file": (__import__("io").BytesIO(example(name)), name)}
    if key:
        data["key"] = key
    return client.post("/model", data=data, content_type="multipart/form-data")


def count(service, table):
    with service.store.read() as tx:
        return tx.cx.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


SEED_PROCESS_FIELDS = {"id", "processInstanceId", "modelId", "modelKey", "processName", "processType",
                       "processStatus", "processContent", "startTime", "endTime", "activitiFileId", "outputs",
                       "nativeOutputs", "rollbackProcessInstanceId", "cancelProcessInstanceId",
                       "deleteProcessInstanceId"}
SEED_TASK_FIELDS = {"id", "processInstanceId", "taskId", "name", "namespace", "stone", "createTime", "endTime",
                    "status", "reason", "params", "outputs", "progress"}


def test_upload_list_and_read_models(client):
    r = deploy(client)
    assert r.status_code == 201, r.json
    dep = r.json
    assert dep["key"] == "noop_chain" and dep["version"] == 1
    r = client.post("/model?key=other", data=example("parallel_disks.bpmn"), content_type="application/xml")
    assert r.status_code == 201 and r.json["key"] == "other"
    models = client.get("/model").json
    assert sorted(m["key"] for m in models) == ["noop_chain", "other"]
    one = client.get(f"/model/{dep['modelId']}").json
    assert one["deployments"][0]["deploymentId"] == dep["deploymentId"]
    assert client.get("/model/nope").status_code == 404


def test_start_read_and_list_tasks_with_seed_fields(client, service, redis_client):
    deploy(client)
    r = client.post("/process", json={"key": "noop_chain", "processName": "test",
                                      "variables": {"vpcId": "vpc-1", "adminPassword": "s3cret"}})
    assert r.status_code == 200, r.json
    proc = r.json
    assert set(proc) >= SEED_PROCESS_FIELDS
    assert proc["processStatus"] == "running" and proc["processName"] == "test"
    assert json.loads(proc["processContent"]) == {"vpcId": "vpc-1", "adminPassword": "******"}
    assert proc["nativeOutputs"] == "" and proc["outputs"] is None and proc["endTime"] is None
    assert client.get(f"/process/{proc['processInstanceId']}").json["id"] == proc["id"]
    tasks = client.get(f"/task?processInstanceId={proc['processInstanceId']}").json
    assert len(tasks) == 1 and set(tasks[0]) >= SEED_TASK_FIELDS
    task = tasks[0]
    assert task["stone"] == "NoopStone" and task["status"] == "produce.success"
    assert client.get(f"/task/{task['taskId']}").json == task
    history = client.get(f"/task/{task['taskId']}/history").json
    assert [h["status"] for h in history] == ["produce.success"]
    assert redis_client.llen("stone.NoopStone") == 1


def test_secret_params_are_masked_in_the_api_and_in_what_celery_shows(client, service, redis_client):
    xml = chain("secret", ("login", "NoopStone", {"adminPassword": "pw", "user": "'root'"}))
    assert client.post("/model", data=xml.encode(), content_type="application/xml").status_code == 201
    r = client.post("/process", json={"key": "secret", "processName": "s", "variables": {"pw": "s3cret"}})
    (task,) = client.get(f"/task?processInstanceId={r.json['processInstanceId']}").json
    assert json.loads(task["params"]) == {"adminPassword": "******", "user": "root"}
    (raw,) = redis_client.lrange("stone.NoopStone", 0, -1)
    headers = json.loads(raw)["headers"]
    assert "s3cret" not in headers["kwargsrepr"] and "******" in headers["kwargsrepr"]


@pytest.mark.parametrize("body, content_type, status, message", [
    ("{not json", "application/json", 400, "malformed JSON"),
    ('["a list"]', "application/json", 400, "must be an object"),
    ('{"key": "noop_chain", "processName": "x", "variables": {}}', "text/plain", 415, "Content-Type"),
    ('{"key": "noop_chain", "variables": {}}', "application/json", 400, "processName"),
    ('{"key": "noop_chain", "processName": "", "variables": {}}', "application/json", 400, "processName"),
    ('{"key": "noop_chain", "processName": "x"}', "application/json", 400, "variables"),
    ('{"key": "noop_chain", "processName": "x", "variables": [1]}', "application/json", 400, "variables"),
    ('{"key": "noop_chain", "processName": "x", "variables": "a"}', "application/json", 400, "variables"),
    ('{"processName": "x", "variables": {}}', "application/json", 400, "modelId, deploymentId or key"),
    ('{"key": 5, "processName": "x", "variables": {}}', "application/json", 400, "key must be a string"),
    ('{"key": "missing", "processName": "x", "variables": {}}', "application/json", 404, "missing"),
    ('{"modelId": "missing", "processName": "x", "variables": {}}', "application/json", 404, "missing"),
    ('{"deploymentId": "missing", "processName": "x", "variables": {}}', "application/json", 404, "missing"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"__builtins__": 1}}', "application/json", 400,
     "reserved"),
    ('{"key": "noop_chain", "processName": "x", "variables": {"a": "\\u0000"}}', "application/json", 400, "NUL"),
])
def test_bad_start_requests_answer_json_errors_and_write_nothing(client, service, redis_client, body,
                                                                 content_type, status, message):
    deploy(client)
    r = client.post("/process", data=body, content_type=content_type)
    assert r.status_code == status, r.json
    assert set(r.json) == {"code", "message"} and message in r.json["message"]
    assert count(service, "processes") == 0 and count(service, "tasks") == 0
    assert redis_client.llen("stone.NoopStone") == 0


@pytest.mark.parametrize("path, status", [
    ("/process/999", 404), ("/process/abc", 404), ("/process/1%27%20OR%201=1", 404),
    ("/task/999", 404), ("/task/x", 404), ("/task?processInstanceId=999", 404), ("/task", 400),
    ("/task/999/history", 404), ("/nowhere", 404),
])
def test_unknown_ids_are_json_404s(client, path, status):
    r = client.get(path)
    assert r.status_code == status
    assert set(r.json) == {"code", "message"}


def test_bad_models_are_400_with_the_parsers_message(client, service):
    r = client.post("/model", data=b"<definitions", content_type="application/xml")
    assert r.status_code == 400 and "does not parse" in r.json["message"]
    r = client.post("/model", data=b'<!DOCTYPE x [<!ENTITY e "x">]><x/>', content_type="application/xml")
    assert r.status_code == 400 and "DOCTYPE" in r.json["message"]
    r = client.post("/model", data=b"x", content_type="text/plain")
    assert r.status_code == 415
    assert count(service, "models") == 0


def test_authentication_when_tokens_are_configured(service, settings):
    from orchestrator.config import Settings

    secured = Settings(database_url=settings.database_url, redis_url=settings.redis_url, api_tokens="t1,t2")
    client = create_app({"TESTING": True, "SETTINGS": secured}, service=service).test_client()
    assert client.get("/model").status_code == 401
    assert client.get("/model", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/model", headers={"Authorization": "Bearer t2"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_body_over_the_limit_is_413(service, settings):
    from orchestrator.config import Settings

    small = Settings(database_url=settings.database_url, redis_url=settings.redis_url, max_body_bytes=1000)
    client = create_app({"TESTING": True, "SETTINGS": small}, service=service).test_client()
    r = client.post("/process", json={"key": "k", "processName": "x", "variables": {"a": "x" * 5000}})
    assert r.status_code == 413 and set(r.json) == {"code", "message"}


def test_swagger_describes_the_endpoints(client):
    spec = client.get("/swagger.json").json
    for path in ("/process", "/process/{processInstanceId}", "/task", "/task/{taskId}", "/model"):
        assert path in spec["paths"], path


def test_operations_answer_409_when_they_make_no_sense(client, service):
    deploy(client)
    proc = client.post("/process", json={"key": "noop_chain", "processName": "x", "variables": {}}).json
    pid = proc["processInstanceId"]
    (task,) = client.get(f"/task?processInstanceId={pid}").json
    r = client.put(f"/process/{pid}/delete")
    assert r.status_code == 409 and "running" in r.json["message"]  # delete a running process
    r = client.put(f"/task/{task['taskId']}/reRun")
    assert r.status_code == 409 and "debug" in r.json["message"]
    assert client.put(f"/task/{task['taskId']}/resume").status_code == 409
    assert client.put(f"/process/{pid}/explode").status_code == 400
    assert client.put(f"/task/{task['taskId']}/explode").status_code == 400
    assert client.put("/process/999/cancel").status_code == 404
    assert client.put("/task/999/reRun").status_code == 404
    r = client.put(f"/process/{pid}/cancel")
    assert r.status_code == 200 and r.json["processStatus"] == "canceling"
    derived = r.json["cancelProcessInstanceId"]
    assert client.put(f"/process/{pid}/cancel").status_code == 409  # a second cancel
    d = client.get(f"/process/{derived}").json
    assert d["processType"] == "cancel" and d["parentProcessInstanceId"] == pid
    assert [t["event"] for t in client.get(f"/task?processInstanceId={derived}").json] == ["cancel"]
