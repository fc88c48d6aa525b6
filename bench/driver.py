"""The load: starting workflows through ``wf.commands`` like any client does.

:class:`Driver` publishes ``workflow.start.v1`` commands with the project's own
:class:`~producers.Publisher` (so each start is acked by Kafka, as a gateway 202 is) in
two shapes: a closed loop that keeps N workflows in flight (throughput), and an open
loop that starts workflows at a fixed rate whatever happens (latency at a given load).
Completions come from :class:`~foldflow.bench.watchers.EventWatcher` through :meth:`finished`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from foldflow.bench.results import PhaseWindow
from foldflow.producers import Publisher
from foldflow.schemas.messages import Envelope, StartWorkflow, dump_json
from foldflow.topics import Topology

__all__ = ["Driver", "PhaseWindow"]

MAX_BATCH = 500
TENANT = "default"


class Driver:
    """Starts workflows of one definition and tracks which are still in flight."""

    def __init__(
        self,
        publisher: Publisher,
        topology: Topology,
        *,
        definition: str,
        run_id: str,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.publisher = publisher
        self.topology = topology
        self.definition = definition
        self.run_id = run_id
        self.progress = progress
        #: workflow id -> wall-clock ms its start command was handed to the producer
        self.starts: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._cond = threading.Condition()

    # --- completions (called from the event watcher's thread) ---------------------------

    def finished(self, workflow_id: str) -> None:
        """A workflow reached a terminal event."""
        with self._cond:
            if workflow_id in self._in_flight:
                self._in_flight.discard(workflow_id)
                self._cond.notify_all()

    def in_flight(self) -> int:
        """How many started workflows have not ended yet."""
        with self._cond:
            return len(self._in_flight)

    def drain(self, *, timeout: float) -> bool:
        """Wait until nothing is in flight; False when ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._in_flight, timeout=timeout)

    # --- starting -----------------------------------------------------------------------

    def _start(self, phase: str, first: int, count: int) -> list[str]:
        now_ms = time.time() * 1000
        ids = [f"{self.run_id}-{phase}-{n:07d}" for n in range(first, first + count)]
        envelopes = [
            (
                self.topology.commands,
                Envelope(
                    event_id=str(uuid.uuid4()),
                    timestamp=int(now_ms),
                    source="bench",
                    correlation_id=wid,
                    workflow_id=wid,
                    payload=StartWorkflow(self.definition, None, dump_json({"n": n}), TENANT),
                    tenant=TENANT,
                ),
            )
            for n, wid in zip(range(first, first + count), ids, strict=True)
        ]
        with self._cond:
            self._in_flight.update(ids)
        for wid in ids:
            self.starts[wid] = now_ms
        self.publisher.publish_many(envelopes)
        return ids

    def closed_loop(
        self, phase: str, *, concurrency: int, seconds: float, total: int | None = None
    ) -> PhaseWindow:
        """Keep ``concurrency`` workflows in flight for ``seconds`` (or ``total`` starts)."""
        started: list[str] = []
        begin = time.time() * 1000
        end = time.monotonic() + seconds
        next_report = time.monotonic() + 5
        while time.monotonic() < end and (total is None or len(started) < total):
            with self._cond:
                self._cond.wait_for(lambda: len(self._in_flight) < concurrency, timeout=0.1)
                free = concurrency - len(self._in_flight)
            if total is not None:
                free = min(free, total - len(started))
            if free > 0:
                started += self._start(phase, len(started), min(free, MAX_BATCH))
            if time.monotonic() >= next_report:
                next_report += 5
                self.progress(f"{phase}: {len(started):,} started, {self.in_flight():,} in flight")
        mode = f"closed loop, {concurrency} in flight"
        return PhaseWindow(phase, mode, begin, time.time() * 1000, tuple(started))

    def open_loop(
        self, phase: str, *, per_second: float, seconds: float, max_in_flight: int
    ) -> PhaseWindow:
        """Start ``per_second`` workflows a second for ``seconds``, whatever completes.

        ``max_in_flight`` is only a safety valve against a system that stopped: when
        that many are outstanding, starting pauses (the report says so via the counts).
        """
        started: list[str] = []
        begin_ms = time.time() * 1000
        begin = time.monotonic()
        next_report = begin + 5
        while (elapsed := time.monotonic() - begin) < seconds:
            due = int(per_second * elapsed) + 1 - len(started)
            room = max_in_flight - self.in_flight()
            if due > 0 and room > 0:
                started += self._start(phase, len(started), min(due, room, MAX_BATCH))
            if time.monotonic() >= next_report:
                next_report += 5
                self.progress(f"{phase}: {len(started):,} started, {self.in_flight():,} in flight")
            time.sleep(0.002)
        mode = f"open loop, {per_second:,.0f} starts/s"
        return PhaseWindow(phase, mode, begin_ms, time.time() * 1000, tuple(started))
