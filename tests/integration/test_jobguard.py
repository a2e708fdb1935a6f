"""The workers' run lock and revocations, on a real Redis."""

from __future__ import annotations

import time

from orchestrator.jobguard import RedisJobGuard

JOB = {"task": 7, "event": "start"}


def test_one_run_at_a_time_and_revocation(redis_client, redis_url):
    a, b = RedisJobGuard(redis_url), RedisJobGuard(redis_url)
    b.client  # noqa: B018 - connect first, then name it as another worker
    b._me = "another-host:1"
    assert a.begin(JOB, ttl_s=5) is None
    assert b.begin(JOB, ttl_s=5) == "busy"
    assert b.begin({"task": 99, "event": "rollback", "lock": 7}, ttl_s=5) == "busy"  # an undo waits for it
    a.release(JOB)
    assert b.begin(JOB, ttl_s=5) is None
    b.release(JOB)
    a.revoke([7])
    assert b.begin(JOB, ttl_s=5) == "revoked"
    assert not redis_client.exists("orch:running:7")  # a refused job holds nothing


def test_a_dead_workers_lock_lapses_after_its_ttl(redis_client, redis_url):
    dead, alive = RedisJobGuard(redis_url), RedisJobGuard(redis_url)
    alive.client  # noqa: B018 - connect first, then name it as another worker
    alive._me = "another-host:2"
    assert dead.begin(JOB, ttl_s=0.5) is None
    dead._held.clear()  # it died: nobody keeps its lock alive any more (a beat under way may extend it once)
    assert alive.begin(JOB, ttl_s=0.5) == "busy"
    deadline = time.monotonic() + 5
    while (answer := alive.begin(JOB, ttl_s=0.5)) == "busy" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer is None


def test_a_long_event_keeps_its_lock(redis_client, redis_url):
    worker, other = RedisJobGuard(redis_url), RedisJobGuard(redis_url)
    other.client  # noqa: B018
    other._me = "another-host:3"
    assert worker.begin(JOB, ttl_s=0.6) is None
    time.sleep(1.5)  # well past the ttl: the heartbeat extended it
    assert other.begin(JOB, ttl_s=0.6) == "busy"
    worker.release(JOB)
    assert other.begin(JOB, ttl_s=0.6) is None
