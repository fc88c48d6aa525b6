"""Reading Foldflow's logs back and checking them: every accepted workflow ended exactly
once, PostgreSQL equals ``wf.events``, no acked record is lost; and the state of a
cluster's partitions (leaders, in-sync replicas).

Shared by the chaos tests and the soak (:mod:`foldflow.bench.soak`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

from foldflow.bench.watchers import header
from foldflow.kafka import kafka_config
from foldflow.schemas.codec import decode, encode
from foldflow.schemas.messages import Envelope, StepCompleted
from foldflow.settings import Settings

#: librdkafka's own lines ("Connect to ... failed" while a broker is down) go nowhere.
QUIET = logging.getLogger("foldflow.bench.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

TERMINAL = {
    "workflow.completed.v1": "completed",
    "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation_failed",
    "workflow.cancelled.v1": "cancelled",
    "workflow.terminated.v1": "terminated",
}


@dataclass(frozen=True)
class Ack:
    """Where the broker said it stored a record."""

    partition: int
    offset: int
    key: str
    event_id: str


@dataclass
class LogRecord:
    """One record as read back from the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    event_type: str  # the header every Foldflow producer sets


def read_topics(
    settings: Settings, topics: Iterable[str], *, timeout: float = 60.0
) -> list[LogRecord]:
    """Every committed record of ``topics`` from the beginning to their current end."""
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
        "logger": QUIET,
        "enable.auto.commit": False, "enable.partition.eof": False,
        "isolation.level": "read_committed",
    }))  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=30)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in metadata.topics[topic].partitions:
                low, high = _watermarks(consumer, TopicPartition(topic, p))
                if high > low:
                    ends[(topic, p)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        records: list[LogRecord] = []
        deadline = time.monotonic() + timeout
        pending = dict(ends)
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                tp = (msg.topic() or "", msg.partition() or 0)
                offset = msg.offset() or 0
                event_type = header(msg, "event_type") or b""
                records.append(LogRecord(
                    tp[0], tp[1], offset, (msg.key() or b"").decode(), msg.value() or b"",
                    event_type.decode(),
                ))  # fmt: skip
                if tp in pending and offset + 1 >= pending[tp]:
                    del pending[tp]
            # transaction markers take the last offsets: the position says we are done
            for tp in list(pending):
                [pos] = consumer.position([TopicPartition(*tp)])
                if pos.offset >= pending[tp]:
                    del pending[tp]
        assert not pending, f"could not read to the end of {sorted(pending)}"
        return records
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """Low and high watermark, asked again while a leader just moved (NOT_LEADER...)."""
    for attempt in range(20):
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            return int(low), int(high)
        except KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def histories(records: Iterable[LogRecord]) -> dict[str, list[Envelope]]:
    """The events of each workflow in log order (``records`` of ``wf.events``)."""
    out: dict[str, list[Envelope]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        out[event.workflow_id].append(event)
    return out


def status_of(events: list[Envelope]) -> str | None:
    """The terminal status a history ends in (None: not finished)."""
    for event in reversed(events):
        if event.event_type in TERMINAL:
            return TERMINAL[event.event_type]
    return None


def log_problems(by_workflow: dict[str, list[Envelope]], ids: Iterable[str]) -> list[str]:
    """What breaks "every workflow ends exactly once": sequences not contiguous from 1,
    one sequence with two contents, a step completed twice, not exactly one ending."""
    problems = []
    for wf in ids:
        first: dict[int, bytes] = {}
        events = by_workflow.get(wf, [])
        for event in events:
            body = encode(event)
            if first.setdefault(event.sequence or 0, body) != body:
                problems.append(f"{wf}: sequence {event.sequence} with two contents")
        if sorted(first) != list(range(1, len(first) + 1)):
            problems.append(f"{wf}: sequences {sorted(first)}")
        unique = {e.sequence: e for e in events}
        steps = [e.payload.step_id for e in unique.values() if isinstance(e.payload, StepCompleted)]
        if len(steps) != len(set(steps)):
            problems.append(f"{wf}: a step completed twice ({sorted(steps)})")
        endings = [e.event_type for e in unique.values() if e.event_type in TERMINAL]
        if endings != ["workflow.completed.v1"]:
            problems.append(f"{wf}: endings {endings}")
    return problems


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, every: float = 1.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds. A
    Kafka error counts as "not yet" (the cluster is expected to be in trouble)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except KafkaException as exc:  # a metadata request to a broker just killed
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last error: {last})")
        time.sleep(every)


class Finished:
    """A check for :func:`wait_for`: every workflow of ``ids`` has a terminal event in
    ``events_topic``; :meth:`pending` says which have not and where they stopped."""

    def __init__(self, settings: Settings, events_topic: str, ids: set[str]) -> None:
        self.settings, self.topic, self.ids = settings, events_topic, ids
        self.last: dict[str, list[str]] = {}  # workflow id -> its event types so far

    def __call__(self) -> bool:
        seen: dict[str, list[str]] = defaultdict(list)
        for record in read_topics(self.settings, [self.topic]):
            seen[record.key].append(record.event_type)
        self.last = seen
        return all(any(t in TERMINAL for t in seen.get(wf, ())) for wf in self.ids)

    def pending(self, show: int = 5) -> str:
        """"N of M not ended; wf-x: ...last event types" (after a failed wait)."""
        left = sorted(w for w in self.ids if not any(t in TERMINAL for t in self.last.get(w, ())))
        lines = [f"{len(left)} of {len(self.ids)} not ended"]
        for wf in left[:show]:
            tail = [t.rsplit(".", 1)[0] for t in self.last.get(wf, [])[-5:]]
            lines.append(f"  {wf}: {' '.join(tail) or 'no event'}")
        return "\n".join(lines)


def finished(settings: Settings, events_topic: str, ids: set[str]) -> Finished:
    """A check: every workflow of ``ids`` has a terminal event in ``events_topic``."""
    return Finished(settings, events_topic, ids)


def projection_differences(
    engine: Engine, by_workflow: dict[str, list[Envelope]], ids: Iterable[str]
) -> list[str]:
    """Where PostgreSQL differs from ``wf.events`` for ``ids``: every (sequence, event id,
    type) of each history, the instance's status and last sequence."""
    ids = list(ids)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT workflow_id, sequence, event_id, event_type FROM workflow_events "
                 "WHERE workflow_id = ANY(:ids)"), {"ids": ids},
        ).all()  # fmt: skip
        instances = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                text("SELECT id, status, last_sequence FROM workflow_instances "
                     "WHERE id = ANY(:ids)"), {"ids": ids},
            )
        }  # fmt: skip
    projected: dict[str, set[tuple[int, str, str]]] = defaultdict(set)
    for wf, seq, event_id, event_type in rows:
        projected[wf].add((int(seq), event_id, event_type))
    problems = []
    for wf in ids:
        logged = {(e.sequence or 0, e.event_id, e.event_type) for e in by_workflow.get(wf, [])}
        if projected.get(wf, set()) != logged:
            problems.append(f"{wf}: PostgreSQL has {len(projected.get(wf, ()))} events, "
                            f"wf.events {len(logged)}")  # fmt: skip
        status = status_of(by_workflow.get(wf, []))
        if instances.get(wf) != (status, len(logged)):
            problems.append(f"{wf}: instance row {instances.get(wf)}, log says "
                            f"{(status, len(logged))}")  # fmt: skip
    return problems


def leaders(admin: AdminClient, topics: Iterable[str]) -> Counter[int]:
    """How many partitions of ``topics`` each broker leads."""
    metadata = admin.list_topics(timeout=10)
    return Counter(
        p.leader for t in topics for p in metadata.topics[t].partitions.values() if p.leader >= 0
    )


def under_replicated(admin: AdminClient, topics: Iterable[str], replicas: int) -> list[str]:
    """The partitions of ``topics`` whose in-sync replicas are fewer than ``replicas`` (or
    that have no leader)."""
    metadata = admin.list_topics(timeout=10)
    return [
        f"{t}[{p.id}] isr={sorted(p.isrs)} leader={p.leader}"
        for t in topics
        for p in metadata.topics[t].partitions.values()
        if len(p.isrs) < replicas or p.leader < 0
    ]


class LiveTail:
    """Reads ``topics`` (read_committed) from the beginning while the test runs and keeps
    every record it saw: a record a consumer saw was acked by every in-sync replica, so
    it must still be at the same offset, unchanged, when the test reads the log again."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.seen: dict[tuple[str, int, int], tuple[str, bytes]] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(kafka_config(settings, {
            "group.id": f"test-tail-{uuid.uuid4().hex[:8]}",
            "logger": QUIET,
            "enable.auto.commit": False, "enable.partition.eof": False,
            "isolation.level": "read_committed",
        }))  # fmt: skip
        metadata = self._consumer.list_topics(timeout=30)
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                               for p in metadata.topics[t].partitions])  # fmt: skip
        self._thread = threading.Thread(target=self._run, daemon=True, name="tail")

    def start(self) -> LiveTail:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is None:
                    where = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                    self.seen[where] = ((msg.key() or b"").decode(), msg.value() or b"")

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()


def lost(
    acks: Iterable[Ack], seen: dict[tuple[str, int, int], tuple[str, bytes]],
    records: Iterable[LogRecord], commands_topic: str,
) -> list[str]:
    """Acked or once-seen records the log no longer holds where the broker put them."""
    log = {(r.topic, r.partition, r.offset): (r.key, r.value) for r in records}
    missing = []
    for ack in acks:
        found = log.get((commands_topic, ack.partition, ack.offset))
        if found is None or found[0] != ack.key or decode(found[1]).event_id != ack.event_id:
            missing.append(f"acked {ack} holds {found and found[0]}")
    for where, record in seen.items():
        if log.get(where) != record:
            missing.append(f"seen {where} key {record[0]} is now {log.get(where, (None,))[0]}")
    return missing


def group_lags(settings: Settings, prefix: str, *, skip: Iterable[str] = ()) -> dict[str, int]:
    """``{group without prefix: records behind its committed offsets}`` for every consumer
    group whose id starts with ``prefix`` (a group that cannot be asked is left out)."""
    config: dict[str, Any] = kafka_config(settings, {"logger": QUIET})
    admin = AdminClient(config)
    consumer = Consumer({**config, "group.id": f"{prefix}lag-probe"})
    skipped = {*skip, f"{prefix}lag-probe"}
    out: dict[str, int] = {}
    try:
        listed = admin.list_consumer_groups().result().valid
        for group in sorted(g.group_id for g in listed if g.group_id.startswith(prefix)):
            if group in skipped:
                continue
            try:
                [future] = admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)]).values()  # fmt: skip
                committed = future.result().topic_partitions or []
                out[group[len(prefix):]] = sum(
                    max(0, _watermarks(consumer, TopicPartition(tp.topic, tp.partition))[1]
                        - tp.offset)
                    for tp in committed if tp.offset >= 0
                )  # fmt: skip
            except KafkaException:  # a group mid-rebalance
                continue
    finally:
        consumer.close()
    return out
