"""After the load: read a run's private topics back to their end, timestamps by key.

Reading after the run, not during it, keeps the harness off the CPU while the services
are measured. Only keys, Kafka timestamps (the broker's append time, ms) and the
``event_type`` header are looked at; nothing is Avro-decoded. A partition's end is where
the ``read_committed`` consumer says it is (its end-of-partition event): transaction
markers take offsets, so offsets cannot be counted.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

from foldflow.bench.watchers import header
from foldflow.kafka import kafka_config
from foldflow.settings import Settings

__all__ = ["TopicTimes", "find_topic", "read_topic"]


@dataclass
class TopicTimes:
    """The records of one topic: every timestamp, the timestamps per key, and the size
    of the last value of each key (what a compacted topic keeps)."""

    topic: str
    all_times: list[int] = field(default_factory=list)
    by_key: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    last_size: dict[str, int] = field(default_factory=dict)
    #: sizes of the running workflows' state records (``W1``) of the state topic
    live_sizes: list[int] = field(default_factory=list)


def read_topic(
    settings: Settings,
    topic: str,
    *,
    event_type: bytes | None = None,
    timeout: float = 120.0,
) -> TopicTimes:
    """Every record of ``topic`` up to its current end (``by_key`` only for records whose
    ``event_type`` header is ``event_type``, when given)."""
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"{settings.topic_prefix}bench-collect-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    }))
    times = TopicTimes(topic)
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return times
        ends: dict[int, int] = {}
        assign = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=30
            )
            if high > low:
                ends[partition] = high
                assign.append(TopicPartition(topic, partition, low))
        consumer.assign(assign)
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                partition = msg.partition() or 0
                offset = msg.offset() or 0
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and offset >= ends.get(
                            partition, 0):  # fmt: skip
                        ends.pop(partition, None)
                    continue
                ts = msg.timestamp()[1]
                times.all_times.append(ts)
                value = msg.value() or b""
                times.last_size[(msg.key() or b"").decode(errors="replace")] = len(value)
                if value.startswith(b"W1"):
                    times.live_sizes.append(len(value))
                if event_type is not None and header(msg, "event_type") != event_type:
                    continue
                times.by_key[(msg.key() or b"").decode()].append(ts)
    finally:
        consumer.close()
    return times


def find_topic(settings: Settings, *, prefix: str, suffix: str) -> str | None:
    """The one topic named ``prefix…suffix``."""
    consumer = Consumer(kafka_config(settings, {
                         "group.id": f"{prefix}bench-find"}))
    try:
        names = consumer.list_topics(timeout=30).topics
    finally:
        consumer.close()
    found = sorted(n for n in names if n.startswith(prefix) and n.endswith(suffix))
    return found[0] if found else None
