"""Reading and replaying ``wf.dlq`` (the dead letters of every consumer).

A dead letter is the original record (key, value, headers) plus the ``dlq.*`` headers
``Publisher.send_to_dlq`` adds: reason, reason kind, topic, partition and offset of
origin, time. :func:`read_dead_letters` reads the topic up to its end as it was when
called; :func:`replay` re-publishes the original bytes (and original headers) to their
topic of origin and waits for the acks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import Span
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from foldflow.kafka import kafka_config
from foldflow.observability.tracing import TRACE_HEADERS, delivered, inject_headers, producing
from foldflow.schemas import codec
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["DeadLetter", "from_record", "read_dead_letters", "replay", "watermarks"]

Headers = tuple[tuple[str, bytes], ...]
_LEADERLESS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                         KafkaError.UNKNOWN_TOPIC_OR_PART})
_tracer = trace.get_tracer("foldflow.dlq")


@dataclass(frozen=True)
class DeadLetter:
    """One record of ``wf.dlq``, its origin and (when it decodes) its event type."""

    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str
    reason_kind: str
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    timestamp_ms: int
    event_type: str | None

    @property
    def original_headers(self) -> Headers:
        """The headers the record had before it was parked (no ``dlq.*``)."""
        return tuple(h for h in self.headers if not h[0].startswith("dlq."))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _header_list(
    headers: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> list[tuple[str, str | bytes | None]]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def from_record(*, partition: int, offset: int, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, str | bytes | None]] | None,
                record_timestamp_ms: int) -> DeadLetter:
    """A :class:`DeadLetter` from the parts of one ``wf.dlq`` record."""
    hs: Headers = tuple(
        (k, v.encode() if isinstance(v, str) else v or b"") for k, v in headers or ()
    )
    meta = {k: v.decode(errors="replace") for k, v in hs if k.startswith("dlq.")}
    try:
        event_type: str | None = codec.decode(value or b"").event_type
    except (codec.CodecError, KeyError):
        event_type = None
    return DeadLetter(
        dlq_partition=partition,
        dlq_offset=offset,
        key=key,
        value=value,
        headers=hs,
        reason=meta.get("dlq.reason", "(no reason given)"),
        reason_kind=meta.get("dlq.reason_kind", "other"),
        origin_topic=meta.get("dlq.topic"),
        origin_partition=_int(meta.get("dlq.partition")),
        origin_offset=_int(meta.get("dlq.offset")),
        timestamp_ms=_int(meta.get("dlq.timestamp")) or record_timestamp_ms,
        event_type=event_type,
    )


class _Watermarks(Protocol):
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        ...


def watermarks(consumer: _Watermarks, partition: TopicPartition, *, timeout: float,
               attempts: int = 5) -> tuple[int, int]:
    """A partition's low and high offsets; a retriable error (a leader that is moving, a
    topic created a moment ago) is retried a few times with backoff before it is raised."""
    retrying = Retrying(
        retry=retry_if_exception(_retriable), stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2), reraise=True,
    )  # fmt: skip
    return retrying(consumer.get_watermark_offsets, partition, timeout=timeout)


def _retriable(error: BaseException) -> bool:
    kafka_error = error.args[0] if isinstance(error, KafkaException) and error.args else None
    return isinstance(kafka_error, KafkaError) and (
        kafka_error.retriable() or kafka_error.code() in _LEADERLESS
    )


def read_dead_letters(settings: Settings, *, since_ms: int | None = None,
                      timeout: float = 10.0,
                      newest_per_partition: int | None = None) -> list[DeadLetter]:
    """Every dead letter (parked at or after ``since_ms``), oldest first per partition;
    with ``newest_per_partition`` only the last that many records of each partition."""
    topic = Topology.of(settings).dlq
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"foldflow-cli-dlq-{uuid.uuid4().hex}",  # never committed
        "enable.auto.commit": False,
        # the end is where the consumer says it is: the orchestrator parks records in
        # transactions, and a commit marker after the last record takes an offset too
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    }))  # fmt: skip
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise KafkaException(f"topic {topic} is missing (run `foldflow topics ensure`)")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in sorted(info.partitions):
            low, high = watermarks(consumer, TopicPartition(topic, p), timeout=timeout)
            if newest_per_partition is not None:
                low = max(low, high - newest_per_partition)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not starts:
            return []
        consumer.assign(starts)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for record in consumer.consume(num_messages=500, timeout=1.0):
                partition, offset = record.partition(), record.offset()
                end = ends.get(partition) if partition is not None else None
                if partition is None or end is None or offset is None:
                    continue
                error = record.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and offset >= end:
                        ends.pop(partition)
                    continue
                if offset >= end:
                    continue
                if offset + 1 >= end:
                    ends.pop(partition)
                letter = from_record(
                    partition=partition, offset=offset, key=record.key(),
                    value=record.value(), headers=_header_list(record.headers()),
                    record_timestamp_ms=record.timestamp()[1],
                )
                if since_ms is None or letter.timestamp_ms >= since_ms:
                    letters.append(letter)
                deadline = time.monotonic() + timeout
        if ends:
            raise KafkaException(f"reading {topic} stalled before its end ({ends})")
        return letters
    finally:
        consumer.close()


def _reporter(span: Span, errors: list[str]) -> Callable[[KafkaError | None, Message], None]:
    def report(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
            delivered(span, error=str(err))
        else:
            delivered(span, partition=msg.partition(), offset=msg.offset())

    return report


def replay(producer: Producer, letters: Sequence[DeadLetter], *,
           timeout: float = 30.0) -> list[DeadLetter]:
    """Re-publish each letter's original bytes to its topic and partition of origin; return
    those sent.

    ``producer`` should be configured like every Foldflow producer
    (``producers.producer_config``: idempotent, ``acks=all``, murmur2) so a key lands on
    the partition it came from. Letters without a topic of origin are skipped. Raises
    ``KafkaException`` if a record was not acked within ``timeout`` seconds.
    """
    errors: list[str] = []
    sent: list[DeadLetter] = []

    for letter in letters:
        if not letter.origin_topic:
            continue
        # A `send` span per replayed record, in the trace the record was parked from.
        with producing(_tracer, topic=letter.origin_topic, key=letter.key,
                       body_size=len(letter.value or b""),
                       headers=letter.original_headers) as span:
            headers: list[tuple[str, str | bytes | None]] = list(inject_headers(
                [h for h in letter.original_headers if h[0] not in TRACE_HEADERS]))
            on_delivery = _reporter(span, errors)
            if letter.origin_partition is None:
                producer.produce(letter.origin_topic, value=letter.value, key=letter.key,
                                 headers=headers, on_delivery=on_delivery)
            else:
                producer.produce(letter.origin_topic, value=letter.value, key=letter.key,
                                 headers=headers, on_delivery=on_delivery,
                                 partition=letter.origin_partition)
        sent.append(letter)
        producer.poll(0)
    left = producer.flush(timeout)
    if left or errors:
        raise KafkaException(
            f"{left} record(s) not acked within {timeout:.0f}s; errors: {'; '.join(errors)}"
        )
    return sent
