"""Input records faust's consumer never delivered, read straight from the log.

faust's consumer sometimes does not deliver a record and later commits past it (see
docs/internals.md, "Input offsets must be contiguous"). :class:`InputOrder` knows the
next offset the orchestrator wants per input partition and notices two kinds of hole:

* a jump: a delivered record lies past the next wanted offset; the records in between
  are read and handled first, in offset order;
* a stall: the partition's log end lies past the next wanted offset and nothing came
  for :data:`STALL_S` (after a failover, faust's consumer started past records nobody
  handled; they were found only when the next record came, after a 30 s attempt timeout).

:class:`HoleReader` reads the range with its own confluent-kafka consumer. Seeking faust's
consumer back instead raced faust's own read offsets: the rest of a batch fetched before
the seek moved ``_read_offset`` past the hole again, faust dropped the re-fetched records
as already read, and the partition stalled for good.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping

from confluent_kafka import Consumer, KafkaError, TopicPartition

from foldflow.observability.tracing import header_list
from foldflow.settings import Settings
from processors.runtime.runner import InputRecord

__all__ = ["STALL_S", "HoleError", "HoleReader", "InputOrder"]

log = logging.getLogger(__name__)

#: How long a partition may lag behind its log end without any record coming.
STALL_S = 3.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0

TopicPartitionKey = tuple[str, int]


class HoleError(RuntimeError):
    """The range could not be read in time (the broker is unreachable or slow)."""


class HoleReader:
    """Reads ``[start, end)`` of one input partition with its own consumer.

    ``group`` is the orchestrator's consumer group: the reader asks for its committed
    offsets but never joins it (``assign`` only) and never commits.
    """

    def __init__(self, settings: Settings, *, group: str, timeout: float = 30.0) -> None:
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
        self._timeout = timeout
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # one read at a time (the agent has concurrency 1)

    def _client(self) -> Consumer:
        """The consumer, made on first use (call with the lock held)."""
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def read(self, topic: str, partition: int, start: int, end: int) -> list[InputRecord]:
        """The records at offsets ``start`` to ``end - 1`` (fewer if retention deleted some).

        Blocking: call it in a thread. Raises :class:`HoleError` after the timeout.
        """
        with self._lock:
            consumer = self._client()
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

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """The partition's first offset and its end (the next offset to be written)."""
        with self._lock:
            low, high = self._client().get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
        return int(low), int(high)

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset of the partition, from the broker (None: none)."""
        with self._lock:
            [tp] = self._client().committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset if tp.offset >= 0 else None

    def close(self) -> None:
        """Close the consumer (if one was made)."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class InputOrder:
    """Hands the agent each input partition's records contiguously, filling holes.

    ``owned(topic, partition)`` tells whether the partition is still assigned here;
    ``start(topic, partition)`` gives the offset to expect after a recovery (the group's
    committed offset, else the earliest). Filled ranges are kept for :meth:`take_filled`
    so the caller can tell faust, once they are stored, that they need no ack.
    """

    def __init__(
        self,
        reader: HoleReader,
        *,
        owned: Callable[[str, int], bool],
        start: Callable[[str, int], Awaitable[int]],
        stall_s: float = STALL_S,
    ) -> None:
        self._reader = reader
        self._owned = owned
        self._start = start
        self._stall_s = stall_s
        #: the next offset to handle, since the last recovery
        self.expected: dict[TopicPartitionKey, int] = {}
        #: since when the log end is past ``expected`` without it moving
        self._behind_since: dict[TopicPartitionKey, float] = {}
        self._filled: list[tuple[str, int, int, int]] = []

    def forget_revoked(self) -> None:
        """After a rebalance: forget the partitions no longer assigned here.

        A partition kept all along keeps its position: faust re-reads it from the
        committed offset, at or below it, and those records pass as replays.
        """
        for tp in [tp for tp in self.expected if not self._owned(*tp)]:
            del self.expected[tp]
        self._behind_since.clear()

    async def _want(self, topic: str, partition: int) -> int:
        tp = (topic, partition)
        if tp not in self.expected:
            self._advance(tp, await self._start(topic, partition))
        return self.expected[tp]

    def _advance(self, tp: TopicPartitionKey, offset: int) -> None:
        self.expected[tp] = offset
        self._behind_since.pop(tp, None)

    async def in_order(self, records: list[InputRecord]) -> list[InputRecord]:
        """``records`` with the ones the consumer skipped before them, in offset order."""
        out: list[InputRecord] = []
        for record in records:
            if not self._owned(record.topic, record.partition):
                out.append(record)  # revoked meanwhile: faust skips it after the rebalance
                continue
            want = await self._want(record.topic, record.partition)
            if record.offset > want:
                out.extend(await self._fill(record.topic, record.partition, want,
                                            record.offset, "the consumer skipped"))  # fmt: skip
            out.append(record)
            if record.offset >= want:
                self._advance((record.topic, record.partition), record.offset + 1)
        return out

    async def stalled(self, ends: Mapping[TopicPartitionKey, int]) -> list[InputRecord]:
        """The records up to ``ends`` (log end offsets) of partitions that stalled."""
        out: list[InputRecord] = []
        now = time.monotonic()
        for (topic, partition), end in sorted(ends.items()):
            if not self._owned(topic, partition):
                continue
            tp = (topic, partition)
            want = await self._want(topic, partition)
            if end <= want:
                self._behind_since.pop(tp, None)
            elif now - self._behind_since.setdefault(tp, now) >= self._stall_s:
                out.extend(await self._fill(topic, partition, want, end,
                                            f"nothing came for {self._stall_s:.0f}s from"))
                self._advance(tp, end)
        return out

    def take_filled(self) -> list[tuple[str, int, int, int]]:
        """The ranges ``(topic, partition, start, end)`` filled since the last call."""
        filled, self._filled = self._filled, []
        return filled

    async def _fill(
        self, topic: str, partition: int, start: int, end: int, why: str
    ) -> list[InputRecord]:
        log.warning("%s %s[%d] offsets %d..%d: reading them from the log",
                  why, topic, partition, start, end - 1)  # fmt: skip
        delay = RETRY_MIN_S
        while True:
            try:
                records = await asyncio.to_thread(self._reader.read, topic, partition, start, end)
            except Exception:
                log.exception("reading %s[%d] offsets %d..%d failed; retrying in %.1fs",
                              topic, partition, start, end - 1, delay)  # fmt: skip
            else:
                self._filled.append((topic, partition, start, end))
                return records
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            if not self._owned(topic, partition):
                return []  # revoked: its next owner reads from the committed offset
