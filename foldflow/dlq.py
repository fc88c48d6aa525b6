"""Reading and replaying ``wf.dlq`` (DESIGN §3, the dead letters of every consumer).

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

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import Span

from foldflow.observability.tracing import TRACE_HEADERS, delivered, inject_headers, producing
from foldflow.settings import Settings
from foldflow.topics import Topology
from schemas import codec

__all__ = ["DeadLetter", "from_record", "read_dead_letters", "replay"]

Headers = tuple[tuple[str, bytes], ...]
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


def read_dead_letters(settings: Settings, *, since_ms: int | None = None,
                      timeout: float = 10.0) -> list[DeadLetter]:
    """Every dead letter (parked at or after ``since_ms``), oldest first per partition."""
    topic = Topology.of(settings).dlq
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"foldflow-cli-dlq-{uuid.uuid4().hex}",  # never committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })  # fmt: skip
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise KafkaException(f"topic {topic} is missing (run `foldflow topics ensure`)")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
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
                if record.error() is not None:
                    continue
                partition, offset = record.partition(), record.offset()
                end = ends.get(partition) if partition is not None else None
                if partition is None or end is None or offset is None or offset >= end:
                    continue
                if offset >= end - 1:
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
