"""Status reports through a Redis stream.

Workers ``XADD`` one entry per lifecycle step; the engine reads them with a consumer group
and acknowledges only after its database commit, so a crashed engine loses nothing: the
unacknowledged entries are claimed again. Pub/sub would drop reports nobody listens to.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusReport:
    process: int  # processInstanceId (the process row's pk)
    task: int  # taskId (the task row's pk)
    attempt: int
    status: str
    at: float  # epoch seconds, when the worker saw it
    reason: str | None = None
    progress: str | None = None
    outputs: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    # A stone's error code (for BPMN error boundary events).
    code: str | None = None
    # Set on a failure the stone's retry policy wants attempted again, after this many seconds.
    retry_in: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> StatusReport:
        d = json.loads(raw)
        return cls(process=int(d["process"]), task=int(d["task"]), attempt=int(d["attempt"]),
                   status=str(d["status"]), at=float(d["at"]), reason=d.get("reason"),
                   progress=None if d.get("progress") is None else str(d["progress"]),
                   outputs=d.get("outputs"), state=d.get("state"),
                   code=None if d.get("code") is None else str(d["code"]),
                   retry_in=None if d.get("retry_in") is None else float(d["retry_in"]))


class StatusReporter:
    """Worker side: append reports. One client per process (created lazily after fork)."""

    def __init__(self, redis_url: str, stream: str):
        self.redis_url = redis_url
        self.stream = stream
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url)
        return self._client

    def send(self, *reports: StatusReport) -> None:
        if len(reports) == 1:
            self.client.xadd(self.stream, {"r": reports[0].to_json()})
            return
        pipe = self.client.pipeline(transaction=False)
        for report in reports:
            pipe.xadd(self.stream, {"r": report.to_json()})
        pipe.execute()


class StatusStream:
    """Engine side: a consumer of the group, reading, acknowledging and trimming."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str):
        self.redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._last_trim = 0.0

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int) -> list[tuple[str, StatusReport | None]]:
        """New entries for this consumer; a malformed one comes back as ``(id, None)``."""
        try:
            resp = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                         count=count, block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # the stream was deleted (Redis restarted without persistence)
            return []
        return self._decode(resp[0][1]) if resp else []

    def claim_stale(self, idle_ms: int, count: int) -> list[tuple[str, StatusReport | None]]:
        """Entries a dead consumer read but never acknowledged."""
        try:
            _next, entries, *_ = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                                       min_idle_time=idle_ms, start_id="0-0", count=count)
        except redis.ResponseError:
            return []
        return self._decode(entries)

    def ack(self, ids: list[str]) -> None:
        if ids:
            self.redis.xack(self.stream, self.group, *ids)

    def trim(self, every_s: float = 10.0) -> None:
        """Drop entries every consumer has acknowledged, so the stream does not grow forever."""
        now = time.monotonic()
        if now - self._last_trim < every_s:
            return
        self._last_trim = now
        try:
            groups = self.redis.xinfo_groups(self.stream)
            pending = self.redis.xpending(self.stream, self.group)
        except redis.ResponseError:
            return
        if len(groups) != 1:
            return  # other readers: not ours to trim
        floor = groups[0]["last-delivered-id"]
        if pending and pending.get("pending"):
            floor = pending["min"]
        if isinstance(floor, bytes):
            floor = floor.decode()
        self.redis.xtrim(self.stream, minid=floor, approximate=True)

    @staticmethod
    def _decode(entries) -> list[tuple[str, StatusReport | None]]:
        out: list[tuple[str, StatusReport | None]] = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if fields is None:  # deleted while pending
                out.append((eid, None))
                continue
            try:
                out.append((eid, StatusReport.from_json(fields[b"r"] if b"r" in fields else fields["r"])))
            except (KeyError, ValueError, TypeError) as exc:
                log.error("dropping malformed status report %s: %s", eid, exc)
                out.append((eid, None))
        return out
