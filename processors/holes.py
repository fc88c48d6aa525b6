"""Reading the input records faust's consumer never delivered, straight from the log.

faust's consumer sometimes does not deliver a record and later commits past it (see
docs/internals.md, "Input offsets must be contiguous"). The agent notices the jump in a
partition's offsets and asks :class:`HoleReader` for the records in between, which it
handles before the record that revealed the hole, in offset order.

Seeking faust's consumer back to the hole instead raced faust's own read offsets: the
rest of a batch fetched before the seek moved ``_read_offset`` past the hole again, and
faust then dropped the re-fetched records as already read, so the partition stalled.
A separate, unsubscribed confluent-kafka consumer reading one range has no such state.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from foldflow.observability.tracing import header_list
from foldflow.settings import Settings
from processors.runner import InputRecord

__all__ = ["HoleError", "HoleReader"]

log = logging.getLogger(__name__)


class HoleError(RuntimeError):
    """The range could not be read in time (the broker is unreachable or slow)."""


class HoleReader:
    """Reads ``[start, end)`` of one input partition with its own consumer (no group commits)."""

    def __init__(self, settings: Settings, *, group: str, timeout: float = 30.0) -> None:
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,  # never joins: assign() only, no commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
        self._timeout = timeout
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # one read at a time (the agent has concurrency 1)

    def read(self, topic: str, partition: int, start: int, end: int) -> list[InputRecord]:
        """The records at offsets ``start`` to ``end - 1`` (fewer if retention deleted some).

        Blocking: call it in a thread. Raises :class:`HoleError` after the timeout.
        """
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._config)
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, start)])
            try:
                return self._read(consumer, topic, partition, start, end)
            finally:
                consumer.unassign()

    def _read(
        self, consumer: Consumer, topic: str, partition: int, start: int, end: int
    ) -> list[InputRecord]:
        records: list[InputRecord] = []
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(max(1, min(500, end - start)), 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue  # the range lies below a record we already hold: it comes
                    raise HoleError(f"reading {topic}[{partition}]: {err}")
                offset = msg.offset() or 0
                if offset >= end:
                    return records
                headers = msg.headers()
                records.append(InputRecord(
                    topic=topic, partition=partition, offset=offset, key=msg.key(),
                    value=msg.value(), headers=header_list(headers) if headers else [],
                ))  # fmt: skip
                if offset == end - 1:
                    return records
        raise HoleError(
            f"reading {topic}[{partition}] offsets {start}..{end - 1} took over "
            f"{self._timeout:.0f}s ({len(records)} read)"
        )

    def close(self) -> None:
        """Close the consumer (if one was made)."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
