"""Idempotent starts: the same Idempotency-Key and body give the same process, even fifty at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from waitress.server import create_server

from api import create_app
from tests.conftest import example


@pytest.fixture
def base_url(service, settings) -> Iterator[str]:
    """The app behind a real HTTP server (waitress, as ``orchestrator api`` runs it)."""
    app = create_app({"TESTING": True, "SETTINGS": settings}, service=service)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(5)


def count(service) -> int:
    with service.store.read() as tx:
        return tx.cx.exec_driver_sql("SELECT count(*) FROM processes").scalar()


ENDPOINTS = [
    ("/process", {"key": "noop_chain", "processName": "a", "variables": {}},
     {"key": "noop_chain", "processName": "b", "variables": {}}, 200, "processInstanceId"),
    ("/runtime/process-instances", {"processDefinitionKey": "noop_chain", "businessKey": "b1"},
     {"processDefinitionKey": "noop_chain", "businessKey": "b2"}, 201, "id"),
]


@pytest.mark.parametrize("path, body, other, created, id_field", ENDPOINTS)
def test_same_key_same_process_other_body_conflict(service, base_url, redis_client, path, body, other, created,
                                                   id_field):
    service.deploy(example("noop_chain.bpmn"))
    headers = {"Idempotency-Key": "order-42"}
    first = requests.post(base_url + path, json=body, headers=headers, timeout=10)
    assert first.status_code == created
    again = requests.post(base_url + path, json=body, headers=headers, timeout=10)
    assert again.status_code == 200 and again.json()[id_field] == first.json()[id_field]
    clash = requests.post(base_url + path, json=other, headers=headers, timeout=10)
    assert clash.status_code == 409 and "Idempotency-Key" in clash.json()["message"]
    assert count(service) == 1 and redis_client.llen("stone.NoopStone") == 1
    fresh = requests.post(base_url + path, json=body, headers={"Idempotency-Key": "order-43"}, timeout=10)
    assert fresh.status_code == created and count(service) == 2


@pytest.mark.parametrize("path, body, other, created, id_field", ENDPOINTS)
def test_fifty_concurrent_duplicates_make_one_process(service, base_url, redis_client, path, body, other, created,
                                                     id_field):
    service.deploy(example("noop_chain.bpmn"))
    headers = {"Idempotency-Key": "burst"}
    barrier = threading.Barrier(50)

    def one(_):
        barrier.wait(10)
        return requests.post(base_url + path, json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert {r.status_code for r in answers} <= {created, 200}
    if created != 200:  # the seed's face answers 200 either way
        assert [r.status_code for r in answers].count(created) == 1
    assert len({r.json()[id_field] for r in answers}) == 1
    assert count(service) == 1
    assert redis_client.llen("stone.NoopStone") == 1
