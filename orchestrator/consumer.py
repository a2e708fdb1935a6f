"""The engine process: read status reports in batches, apply them, acknowledge, publish.

Several engine processes may run: they share one consumer group, so each report goes
to one of them, and the process-row locks keep one writer per process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from sqlalchemy.exc import OperationalError

from orchestrator.service import Effects, Service
from orchestrator.status import StatusReport, StatusStream

log = logging.getLogger(__name__)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EngineLoop:
    def __init__(self, service: Service, stream: StatusStream, *, batch: int = 500, block_ms: int = 200,
                 claim_idle_s: float = 30.0, sweep_every_s: float = 2.0):
        self.service = service
        self.stream = stream
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.sweep_every_s = sweep_every_s
        self._last_claim = 0.0
        self._last_sweep = 0.0
        self.applied = 0

    def run_once(self) -> int:
        """One batch; returns how many entries it handled."""
        now = time.monotonic()
        entries = []
        if now - self._last_claim > self.claim_idle_ms / 2000:
            self._last_claim = now
            entries = self.stream.claim_stale(self.claim_idle_ms, self.batch)
        if not entries:
            entries = self.stream.read(self.batch, self.block_ms)
        self.service.collect_produced()
        if entries:
            self._apply(entries)
        else:
            self.service.flush_produced()
        if now - self._last_sweep > self.sweep_every_s:
            self._last_sweep = now
            self.service.sweep_outbox()
            self.service.fire_due_timers()
            self.service.reconcile()
            self.stream.trim()
        return len(entries)

    def _apply(self, entries: list[tuple[str, StatusReport | None]]) -> None:
        reports = [r for _, r in entries if r is not None]
        try:
            outbox = self.service.apply_reports(reports)
        except OperationalError:
            # The database is away: keep the reports unacknowledged; they are claimed again.
            log.exception("database unavailable; %d reports stay pending", len(entries))
            time.sleep(1.0)
            return
        except Exception:
            log.exception("a batch of %d reports failed; applying them one by one", len(reports))
            outbox = Effects()
            for report in reports:
                try:
                    outbox += self.service.apply_reports([report])
                except OperationalError:
                    log.exception("database unavailable")
                    time.sleep(1.0)
                    return
                except Exception:
                    # A report that cannot be applied would block the stream forever; the task's
                    # lease lets the reconciler recover it.
                    log.exception("dropping report that cannot be applied: %s", report)
        self.stream.ack([eid for eid, _ in entries])
        self.applied += len(reports)
        self.service.publish(outbox, defer_marks=True)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.stream.ensure_group()
        log.info("engine consuming %s as %s", self.stream.stream, self.stream.consumer)
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("engine loop error")
                time.sleep(1.0)
