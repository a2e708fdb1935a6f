"""Worker-side guards kept in Redis: revoked tasks, and one run of a task at a time.

A job is only a wake-up: it can be duplicated (a re-delivery, the reconciler re-sending a
job whose lease ran out) or outlive a cancel. Before running an event the worker checks
that the task was not revoked and takes a short lock on the task, so two copies of one
job never run a stone's event side by side.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import redis

REVOKED_TTL_S = 7 * 24 * 3600


class JobGuard(Protocol):
    def begin(self, job: dict[str, Any], ttl_s: float) -> str | None:
        """None when the job may run; else why not (``revoked`` or ``busy``)."""

    def release(self, job: dict[str, Any]) -> None: ...


# Compare-and-delete / compare-and-extend: after a TTL expiry another worker may hold the lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
           "return 0")


class RedisJobGuard:
    """The lock lives for ``ttl_s`` (the task lease): a killed worker's lock expires when the
    reconciler would send the job again. While a worker runs an event, one heartbeat thread
    per process keeps every lock it holds alive, so a long event is never run twice at once."""

    def __init__(self, redis_url: str, prefix: str = "orch"):
        self.redis_url = redis_url
        self.prefix = prefix
        self._client: redis.Redis | None = None
        self._pid = -1
        self._held: dict[str, float] = {}  # lock key -> ttl seconds
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():  # one connection pool per forked child
            self._client = redis.Redis.from_url(self.redis_url)
            self._pid = os.getpid()
            self._me = f"{socket.gethostname()}:{self._pid}"
            self._release = self._client.register_script(_RELEASE)
            self._extend = self._client.register_script(_EXTEND)
            self._held, self._heartbeat = {}, None
        return self._client

    def _revoked_key(self, task_pk: int) -> str:
        return f"{self.prefix}:revoked:{task_pk}"

    def _lock_key(self, job: dict[str, Any]) -> str:
        # An undo event (rollback, cancel, delete) shares the lock of the task it undoes.
        return f"{self.prefix}:running:{job.get('lock', job['task'])}"

    def revoke(self, task_pks: Iterable[int]) -> None:
        pks = list(task_pks)
        if not pks:
            return
        pipe = self.client.pipeline(transaction=False)
        for pk in pks:
            pipe.set(self._revoked_key(pk), 1, ex=REVOKED_TTL_S)
        pipe.execute()

    def begin(self, job: dict[str, Any], ttl_s: float) -> str | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._revoked_key(job["task"]))
        pipe.set(self._lock_key(job), self._me, nx=True, px=max(1, int(ttl_s * 1000)))
        revoked, claimed = pipe.execute()
        if revoked:
            if claimed:
                self.release(job)
            return "revoked"
        if not claimed:
            return "busy"
        with self._lock:
            self._held[self._lock_key(job)] = ttl_s
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="jobguard-heartbeat", daemon=True)
                self._heartbeat.start()
        return None

    def release(self, job: dict[str, Any]) -> None:
        key = self._lock_key(job)
        with self._lock:
            self._held.pop(key, None)
        self._release(keys=[key], args=[self._me], client=self.client)

    def _beat(self) -> None:
        while True:
            with self._lock:
                held = dict(self._held)
            ttl = min(held.values(), default=30.0)
            time.sleep(max(0.2, ttl / 3))
            for key, key_ttl in held.items():
                # Redis away: the lock lapses and the reconciler takes over.
                with contextlib.suppress(redis.RedisError):
                    self._extend(keys=[key], args=[self._me, int(key_ttl * 1000)], client=self.client)
