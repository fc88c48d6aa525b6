"""Observers of a run: terminal events on ``wf.events``, task commands, rows in
PostgreSQL, memory.

They only read, as ``read_committed`` consumers: the orchestrator writes in Kafka
transactions, so a record's broker timestamp is when it was appended, not when it
became visible (its transaction's commit). :class:`EventWatcher` follows ``wf.events``
(the ``event_type`` header only: nothing is Avro-decoded, so the harness stays cheap)
and reports each workflow's terminal event at the moment it could see it;
:class:`TaskWatcher` notes when each task command became visible;
:class:`ProjectionWatcher` polls ``workflow_instances`` for workflows Kafka already saw
end and notes when each row first shows its terminal status; :class:`RssSampler`
samples the orchestrator's VmRSS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

from foldflow.bench.results import Completion
from foldflow.bench.services import rss_mb
from foldflow.kafka import kafka_config
from foldflow.settings import Settings

__all__ = [
    "TERMINAL_EVENTS",
    "Completion",
    "EventWatcher",
    "ProjectionWatcher",
    "RssSampler",
    "TaskWatcher",
    "header",
    "poll_interval",
]

#: The terminal event types of wf.events and the status each one ends in.
TERMINAL_EVENTS = {
    b"workflow.completed.v1": "completed",
    b"workflow.failed.v1": "failed",
    b"workflow.compensated.v1": "compensated",
    b"workflow.compensation_failed.v1": "compensation_failed",
    b"workflow.cancelled.v1": "cancelled",
    b"workflow.terminated.v1": "terminated",
}


def header(msg: Message, name: str) -> bytes | None:
    """The value of header ``name`` of ``msg`` (bytes), None when absent."""
    headers: list[tuple[str, object]] = list(msg.headers() or [])  # type: ignore[arg-type]
    for key, value in headers:
        if key == name:
            return value if isinstance(value, bytes) else None
    return None


class _Follower:
    """Follows ``topic`` from the beginning in a thread, as a ``read_committed`` reader that
    returns at the first record (no batch wait); :meth:`_on` gets each record and the wall
    ms at which its batch arrived."""

    def __init__(self, settings: Settings, topic: str, *, name: str) -> None:
        self.topic = topic
        self._stop = threading.Event()
        self._consumer = Consumer(kafka_config(settings, {
            "group.id": f"{settings.topic_prefix}{name}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
        }))
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close the consumer."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            first = self._consumer.poll(0.05)  # returns at the first message: no batch wait
            if first is None:
                continue
            seen_ms = int(time.time() * 1000)
            for msg in [first, *self._consumer.consume(500, 0)]:
                if msg.error() is None:
                    self._on(msg, seen_ms)

    def _on(self, msg: Message, seen_ms: int) -> None:
        raise NotImplementedError


class EventWatcher(_Follower):
    """Follows ``wf.events`` from the beginning in a thread.

    ``event_times`` gets the Kafka timestamp of every event; ``completions`` the terminal
    event of every workflow, timed when this ``read_committed`` reader received it (wall
    ms); ``on_terminal(workflow_id)`` is called for each (first one only).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        on_terminal: Callable[[str], None],
    ) -> None:
        super().__init__(settings, topic, name="bench-events")
        self.on_terminal = on_terminal
        self.event_times: list[int] = []
        self.completions: dict[str, Completion] = {}
        #: confluent_kafka's TIMESTAMP_* type of the records seen (append or create time)
        self.timestamp_type: int | None = None

    def _on(self, msg: Message, seen_ms: int) -> None:
        self.timestamp_type, kafka_ms = msg.timestamp()
        self.event_times.append(kafka_ms)
        status = TERMINAL_EVENTS.get(header(msg, "event_type") or b"")
        if status is None:
            return
        workflow_id = (msg.key() or b"").decode()
        if workflow_id not in self.completions:
            self.completions[workflow_id] = Completion(status, seen_ms)
            self.on_terminal(workflow_id)


class TaskWatcher(_Follower):
    """Notes when each ``task.execute.v1`` of a task topic became visible (wall ms, per
    workflow, in order): the end of a step dispatch as the performance targets time it."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic, name="bench-tasks")
        self.seen: dict[str, list[int]] = {}

    def _on(self, msg: Message, seen_ms: int) -> None:
        self.seen.setdefault((msg.key() or b"").decode(), []).append(seen_ms)


#: The projection poll waits one interval per this many workflows still to show up ...
PENDING_PER_INTERVAL = 100
#: ... and at most this long.
POLL_MAX_S = 0.5


def poll_interval(interval: float, pending: int) -> float:
    """How long :class:`ProjectionWatcher` waits before its next query.

    ``interval`` while few rows are awaited; longer in proportion to the backlog, so a
    projector far behind (at saturation) is not also made to answer ever larger queries
    50 times a second, whose cost landed on PostgreSQL's and the harness's CPU per
    workflow. ``pending`` rows awaited mean the oldest is already about
    ``pending / rate`` late, so the coarser reading stays a small share of its lag.
    """
    return min(POLL_MAX_S, interval * max(1.0, pending / PENDING_PER_INTERVAL))


class ProjectionWatcher:
    """Polls PostgreSQL for the rows of workflows Kafka saw end, every ``interval`` seconds
    while few are awaited (:func:`poll_interval`).

    ``seen[workflow_id]`` is the wall time (ms) of the first query that found the row in
    a terminal status: an upper bound of when the projector's commit became visible,
    at most one poll interval plus one query late.
    """

    def __init__(self, database_url: str, *, interval: float = 0.02) -> None:
        self.interval = interval
        self.seen: dict[str, float] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._engine = create_engine(database_url, pool_size=1, max_overflow=0)
        self._query = text(
            "SELECT id FROM workflow_instances WHERE id = ANY(:ids) AND status IN "
            "('completed','failed','compensated','compensation_failed','cancelled',"
            "'terminated')"
        ).bindparams(bindparam("ids", type_=ARRAY(String)))
        self._thread = threading.Thread(target=self._run, name="bench-projection", daemon=True)

    def watch(self, workflow_id: str) -> None:
        """Look for this workflow's terminal row from now on."""
        with self._lock:
            self._pending.add(workflow_id)

    def pending(self) -> int:
        """How many watched workflows have not shown up yet."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and dispose of the engine."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._engine.dispose()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            awaited = 0
            while not self._stop.wait(poll_interval(self.interval, awaited)):
                with self._lock:
                    ids = list(self._pending)
                if not ids:
                    continue
                asked = time.time() * 1000
                found = [row[0] for row in conn.execute(self._query, {"ids": ids})]
                with self._lock:
                    for workflow_id in found:
                        self._pending.discard(workflow_id)
                        self.seen[workflow_id] = asked
                    awaited = len(self._pending)


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, *, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def now(self) -> float | None:
        """One sample, taken now."""
        return rss_mb(self.pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append(value)
