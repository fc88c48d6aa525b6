"""The projector service: ``wf.events`` and ``wf.definitions`` folded into PostgreSQL.

Loop: wait up to ``batch_timeout`` for the first record, take it with whatever else
has arrived (up to ``max_batch``, without waiting for more: a batch's own write time
batches the next one under load), send the undecodable ones to ``wf.dlq``, then write
the batch and the positions after it in ONE transaction
(:func:`foldflow.projections.store.write_batch`). Kafka offsets are never committed: on
assignment the projector seeks to the positions stored in
``projection_offsets`` (the beginning when none), so PostgreSQL holds exactly the events
up to the stored positions — effectively once, across crashes and rebalances.

The stored positions can also move under a running projector (a rebuild swapped in, an
operator's reset): a batch whose partition moved writes nothing and seeks, and every
``position_check_interval`` the stored positions of all assigned partitions are compared
with the projector's own, so a partition that receives nothing more follows the move too.

Failures: PostgreSQL unreachable → the same batch is retried with exponential backoff
until it commits. A sequence gap → rolled back, counted, logged, and the partitions are
re-read from the stored positions after a backoff (with a larger batch, so a late event
can join its predecessors); a gap is never skipped. A value PostgreSQL cannot store
never stops the projector: it is repaired before the fold (:mod:`foldflow.projections.storable`),
or, when PostgreSQL still refuses the batch, the batch is written again event by event
and the refused event is stored in a form that fits (:mod:`foldflow.projections.store`); either
way the event is flagged in ``altered`` and its record goes to ``wf.dlq``. Any other error
is logged and ends :meth:`Projector.run` with it (the process exits non-zero).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception, wait_exponential

from foldflow.kafka import kafka_config
from foldflow.observability import metrics
from foldflow.observability.logging import bind
from foldflow.observability.outcomes import OUTCOMES
from foldflow.observability.tracing import consuming, header_list, links_from, spans_seen
from foldflow.projections.apply import ProjectionError
from foldflow.projections.cache import RowCache
from foldflow.projections.dberrors import is_refusal, is_transient
from foldflow.projections.storable import Alteration, needs_repair, repair
from foldflow.projections.store import (
    BatchResult,
    Record,
    TopicPartition,
    definition_names,
    read_offsets,
    write_batch,
)
from foldflow.schemas.codec import CodecError, decode
from foldflow.schemas.messages import DefinitionRegistered, kind_of
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = [
    "PROJECTION",
    "Projector",
    "ProjectorOptions",
    "UnstorableValueError",
    "consumer_group",
    "decode_record",
]

log = logging.getLogger("foldflow.projector")
_tracer = trace.get_tracer("foldflow.projector")

#: The name under which the live projector stores its positions.
PROJECTION = "projector"


def consumer_group(settings: Settings) -> str:
    """The projector's consumer group (carries the topic prefix, like every name)."""
    return f"{settings.topic_prefix}foldflow.projector"


@dataclass(frozen=True)
class ProjectorOptions:
    """Batching and backoff knobs (defaults suit production)."""

    max_batch: int = 500
    #: seconds the loop waits for a first record before it looks at its other work
    batch_timeout: float = 0.1
    max_gap_batch: int = 20_000
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    #: seconds between two comparisons of every assigned partition's stored position
    position_check_interval: float = 1.0


class UnprojectableError(Exception):
    """A record that decodes but does not belong on its topic (e.g. a command on wf.events)."""


class UnstorableValueError(Exception):
    """A record projected with values PostgreSQL could not store replaced (the DLQ reason)."""


def decode_record(msg: Message, *, events_topic: str) -> Record:
    """Decode one record, raising :class:`CodecError`/:class:`UnprojectableError` for the DLQ.

    Values PostgreSQL cannot store are replaced (:func:`foldflow.projections.storable.repair`);
    ``Record.altered`` says which.
    """
    env = decode(msg.value() or b"")
    topic = msg.topic() or ""
    if topic == events_topic:
        if kind_of(env.payload) != "event":
            raise UnprojectableError(f"{env.event_type} is not an event")
        if env.sequence is None or env.sequence < 1:
            raise UnprojectableError(f"{env.event_type} has no sequence")
    elif not isinstance(env.payload, DefinitionRegistered):
        raise UnprojectableError(f"{env.event_type} on {topic} is not a definition")
    altered = None
    if needs_repair(env):
        env, altered = repair(env)
    headers = msg.headers()
    return Record(topic, msg.partition() or 0, msg.offset() or 0, env,
                  header_list(headers) if headers else None, altered, len(msg.value() or b""))


class Projector:
    """One projector process: a consumer, an engine, a DLQ publisher.

    ``dlq`` is called as ``dlq(msg, error)`` and must return only once the record is
    safely parked (``Publisher.send_to_dlq``); the composition root wires it.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        dlq: Callable[[Message, BaseException], None],
        *,
        options: ProjectorOptions | None = None,
        projection: str = PROJECTION,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.dlq = dlq
        self.options = options or ProjectorOptions()
        self.projection = projection
        self.topology = Topology.of(settings)
        self.stopping = threading.Event()
        self.positions: dict[TopicPartition, int | None] = {}
        #: (topic, partition, offset) of the records parked on the DLQ, not yet passed
        self._dlq_sent: set[tuple[str, int, int]] = set()
        self._batch_messages: dict[tuple[str, int, int], Message] = {}
        self._batch_size = self.options.max_batch
        self._gap_backoff = self.options.backoff_initial
        self._counted_definitions: set[str] = set()
        #: the rows of the workflows being folded, kept between batches
        self.rows = RowCache()
        self.consumer = Consumer(
            kafka_config(settings, {
                "group.id": consumer_group(settings),
                "client.id": f"foldflow-projector-{settings.instance_id or ''}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "max.poll.interval.ms": 600_000,
                # a killed projector's partitions move on after 10 s, not the default 45 s
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
            })
        )

    # --- positions ---------------------------------------------------------------------

    def _retrying(self) -> Retrying:
        o = self.options
        return Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=o.backoff_initial, max=o.backoff_max),
            before_sleep=lambda rs: log.warning(
                "PostgreSQL unavailable, retrying",
                extra={"attempt": rs.attempt_number, "error": str(rs.outcome.exception())
                       if rs.outcome else None},
            ),
            reraise=True,
        )

    def _stored_positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        for attempt in self._retrying():
            with attempt, self.engine.connect() as conn:
                return read_offsets(conn, self.projection, tps)
        raise AssertionError("unreachable")

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        stored = self._stored_positions([(p.topic, p.partition) for p in partitions])
        for p in partitions:
            offset = stored.get((p.topic, p.partition))
            self.positions[(p.topic, p.partition)] = offset
            self.rows.forget((p.topic, p.partition))
            p.offset = OFFSET_BEGINNING if offset is None else offset
        log.info("partitions assigned", extra={"positions": {f"{t}[{p}]": o for (t, p), o in
                                                             sorted(stored.items())}})
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        for p in partitions:
            self.positions.pop((p.topic, p.partition), None)
            self.rows.forget((p.topic, p.partition))
        log.info("partitions revoked", extra={"count": len(partitions)})
        consumer.unassign()

    def _seek(self, tp: TopicPartition, offset: int | None) -> None:
        if tp not in self.positions:
            return  # revoked meanwhile
        self.positions[tp] = offset
        self.rows.forget(tp)
        target = OFFSET_BEGINNING if offset is None else offset
        self.consumer.seek(KafkaTopicPartition(tp[0], tp[1], target))

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Consume and apply until :meth:`stop`; closes the consumer at the end."""
        self.consumer.subscribe(
            [self.topology.events, self.topology.definitions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("projector started", extra={"group": consumer_group(self.settings)})
        self._count_outcomes_of(self._known_definitions())
        interval = self.options.position_check_interval
        next_check = time.monotonic() + interval
        try:
            while not self.stopping.is_set():
                messages = self._next_batch()
                if messages:
                    self.handle(messages)
                if time.monotonic() >= next_check:
                    self.follow_stored_positions()
                    next_check = time.monotonic() + interval
        except Exception:
            log.exception("projector failed")
            raise
        finally:
            self.consumer.close()
            log.info("projector stopped")

    def _next_batch(self) -> list[Message]:
        """The next batch, returned at the first record with whatever else has arrived. A
        gap retry (a batch larger than ``max_batch``) waits the whole ``batch_timeout``
        instead, so a late event can join its predecessors."""
        if self._batch_size > self.options.max_batch:
            return self.consumer.consume(self._batch_size, self.options.batch_timeout)
        first = self.consumer.poll(self.options.batch_timeout)
        if first is None:
            return []
        return [first, *self.consumer.consume(self._batch_size - 1, 0)]

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self.stopping.set()

    def follow_stored_positions(self) -> None:
        """Seek every assigned partition whose stored position is no longer the projector's.

        A batch notices a moved position only for the partitions it carries records of: a
        rebuild swapped in behind a partition that receives nothing more (its positions
        older than the projector's) would otherwise leave that partition's tail missing
        from the new tables for good. A transient PostgreSQL error skips this check (the
        next one follows); any other error is raised.
        """
        tps = sorted(self.positions)
        if not tps:
            return
        try:
            with self.engine.connect() as conn:
                stored = read_offsets(conn, self.projection, tps)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            log.warning("stored positions unreadable; checking again later",
                        extra={"error": str(exc)})
            return
        for tp in tps:
            offset = stored.get(tp)
            if tp in self.positions and self.positions[tp] != offset:
                self._follow(tp, offset)

    def _follow(self, tp: TopicPartition, offset: int | None) -> None:
        log.warning("stored position moved; seeking",
                    extra={"topic": tp[0], "partition": tp[1], "offset": offset,
                           "expected": self.positions.get(tp)})
        self._seek(tp, offset)

    def _records(self, messages: Sequence[Message]) -> list[Record]:
        records: list[Record] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            try:
                record = decode_record(msg, events_topic=self.topology.events)
            except (CodecError, UnprojectableError) as exc:
                self._dead_letter(msg, exc)
                records.append(Record(tp[0], tp[1], offset, None))
                continue
            if record.altered is not None:
                self._dead_letter(msg, UnstorableValueError(
                    f"projected with values replaced: {record.altered.reason}"))
            self._batch_messages[(tp[0], tp[1], offset)] = msg
            records.append(record)
        return records

    def _dead_letter(self, msg: Message, error: BaseException) -> None:
        """Park ``msg`` on the DLQ once (a re-read after a rollback does not repeat it)."""
        where = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
        if where in self._dlq_sent:
            return
        log.warning("record to the DLQ", extra={"topic": where[0], "partition": where[1],
                                               "offset": where[2], "reason": str(error)})
        self.dlq(msg, error)
        self._dlq_sent.add(where)

    def _on_refused(self, record: Record, altered: Alteration) -> None:
        msg = self._batch_messages.get((record.topic, record.partition, record.offset))
        if msg is not None:
            self._dead_letter(msg, UnstorableValueError(
                f"PostgreSQL refused it; stored in a form that fits: {altered.reason}"))

    def _forget_dead_letters(self) -> None:
        """Drop what the stored positions passed: those records are never read again."""
        self._dlq_sent = {
            (t, p, o) for (t, p, o) in self._dlq_sent
            if (t, p) in self.positions and (self.positions[(t, p)] or 0) <= o
        }

    def handle(self, messages: Sequence[Message]) -> BatchResult | None:
        """Apply one consumed batch (public for tests and the rebuild's reuse of the loop)."""
        self._batch_messages = {}
        records = [r for r in self._records(messages) if (r.topic, r.partition) in self.positions]
        if not records:
            return None
        started, started_ns = time.perf_counter(), time.time_ns()
        batch_span = self._batch_span(records, started_ns)
        try:
            result = self._commit(records)
        except ProjectionError as exc:
            batch_span.set_status(Status(StatusCode.ERROR, str(exc)))
            batch_span.end()
            metrics.PROJECTION_GAPS.inc()
            with bind(workflow_id=getattr(exc, "workflow_id", None)):
                log.error("batch rolled back; retrying from the stored positions",
                          extra={"error": str(exc), "backoff_s": self._gap_backoff})
            self.stopping.wait(self._gap_backoff)
            self._gap_backoff = min(self._gap_backoff * 2, self.options.backoff_max)
            self._batch_size = min(self._batch_size * 2, self.options.max_gap_batch)
            for tp in sorted({(r.topic, r.partition) for r in records}):
                self._seek(tp, self.positions.get(tp))
            return None
        except BaseException as exc:
            batch_span.record_exception(exc)
            batch_span.set_status(Status(StatusCode.ERROR, str(exc)))
            batch_span.end()
            raise
        batch_span.end()
        self._batch_size = self.options.max_batch
        self._gap_backoff = self.options.backoff_initial
        for tp, offset in result.moved.items():
            self._follow(tp, offset)
        for tp, offset in result.positions.items():
            if tp in self.positions:
                self.positions[tp] = offset
        self._batch_messages = {}
        if self._dlq_sent:
            self._forget_dead_letters()
        self._observe(result, time.perf_counter() - started)
        self._trace(records, started_ns, batch_span)
        return result

    def _batch_span(self, records: Sequence[Record], started_ns: int) -> Span:
        """The span of one batch transaction: its records come from many traces, so it
        links to their producers (the SDK keeps the first 128) instead of having a parent."""
        seen = spans_seen(_tracer)
        return _tracer.start_span(
            "process batch", context=Context(), kind=SpanKind.CONSUMER, start_time=started_ns,
            links=links_from(r.headers for r in records) if seen else (),
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.operation.name": "process",
                        "messaging.consumer.group.name": consumer_group(self.settings),
                        "messaging.batch.message_count": len(records)},
        )

    def _trace(self, records: Sequence[Record], started_ns: int, batch: Span) -> None:
        """One ``process`` span per applied event, child of the ``send`` span that produced
        it (so the workflow's trace ends here) and linked to the batch's transaction; none
        when nobody would see them."""
        if not spans_seen(_tracer):
            return
        group = consumer_group(self.settings)
        batch_link = [Link(batch.get_span_context())]
        for r in records:
            if r.envelope is None or not r.headers:
                continue
            with consuming(
                _tracer, topic=r.topic, partition=r.partition, offset=r.offset,
                headers=r.headers, group=group, key=r.envelope.workflow_id,
                start_time=started_ns, links=batch_link,
                attributes={"messaging.message.id": r.envelope.event_id,
                            "foldflow.event_type": r.envelope.event_type,
                            "foldflow.workflow_id": r.envelope.workflow_id,
                            "foldflow.sequence": r.envelope.sequence or 0},
            ):
                pass

    def _known_definitions(self) -> set[str]:
        for attempt in self._retrying():
            with attempt, self.engine.connect() as conn:
                return definition_names(conn)
        raise AssertionError("unreachable")

    def _count_outcomes_of(self, definitions: set[str]) -> None:
        """Start every outcome series of ``definitions`` at 0, so that the first workflow of
        a kind to end is an increase Prometheus sees, not a series appearing at 1."""
        for definition in definitions - self._counted_definitions:
            for status, cause in OUTCOMES:
                metrics.WORKFLOW_OUTCOMES.labels(definition, status, cause)
            self._counted_definitions.add(definition)

    def _commit(self, records: list[Record]) -> BatchResult:
        try:
            return self._write(records, careful=False)
        except Exception as exc:
            if not is_refusal(exc):
                raise
            log.warning("PostgreSQL refused a value of the batch; writing it event by event",
                        extra={"error": str(exc)[:500], "records": len(records)})
        return self._write(records, careful=True)

    def _write(self, records: list[Record], *, careful: bool) -> BatchResult:
        expected = dict(self.positions)
        for attempt in self._retrying():
            with attempt:
                with self.engine.begin() as conn:
                    result = write_batch(conn, projection=self.projection, records=records,
                                         expected=expected, careful=careful,
                                         on_refused=self._on_refused, rows=self.rows)
                self.rows.apply(result.cached)  # committed
                return result
        raise AssertionError("unreachable")

    def _observe(self, result: BatchResult, seconds: float) -> None:
        now_ms = time.time() * 1000
        metrics.PROJECTION_BATCH_SIZE.observe(result.events + result.definitions)
        metrics.PROJECTION_BATCH_SECONDS.observe(seconds)
        metrics.PROJECTION_EVENTS_APPLIED.inc(result.events)
        self._count_outcomes_of(result.started)
        for definition, ended in result.finished:
            metrics.WORKFLOW_OUTCOMES.labels(definition, ended.status, ended.cause).inc()
        for ts in result.timestamps:
            metrics.PROJECTION_LAG_SECONDS.observe(max(0.0, (now_ms - ts) / 1000))
        for (_, partition), ts in result.last_timestamps.items():
            metrics.PROJECTION_PARTITION_LAG_SECONDS.labels(partition=str(partition)).set(
                max(0.0, (now_ms - ts) / 1000)
            )
        if result.events or result.skipped:
            log.debug("batch applied", extra={"events": result.events,
                                              "skipped": result.skipped,
                                              "definitions": result.definitions})
