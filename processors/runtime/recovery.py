"""Restoring a partition's workflow states from ``wf.orchestrator-state`` on assignment.

The state topic is read ``read_committed`` from its first offset to its end, where the
end is the consumer's end-of-partition event: with ``read_committed`` that is the last
stable offset, so records of a transaction still open (a zombie's, which can only abort:
its offsets were never accepted) are not read. The loop asks only after the group's
committed input offsets are stable, so the states read are exactly those the committed
offsets belong to (the state records and the offsets were committed in one transaction).

The last record of each key wins (the topic is compacted, but not necessarily yet).
Definition records are decoded before the states that reference them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from foldflow.kafka import kafka_config
from foldflow.processors.runtime.errors import Stopped
from foldflow.processors.runtime.records import (
    DEFINITION_KEY_PREFIX,
    DefinitionRecord,
    DefinitionTable,
    Finished,
    Live,
    RecordError,
    decode_value,
)
from foldflow.processors.runtime.store import PartitionState
from foldflow.settings import Settings

__all__ = ["Restored", "StateReader"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict[str, Any]], Consumer]


@dataclass
class Restored:
    """One partition as read back: its committed state and the timers of its workflows."""

    state: PartitionState
    timers: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    records: int = 0
    unreadable: int = 0


class StateReader:
    """Reads partitions of the state topic to their end (a group-less consumer per read)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        definitions: DefinitionTable,
        consumer_factory: ConsumerFactory = Consumer,
    ) -> None:
        self._topic = topic
        self._definitions = definitions
        self._factory = consumer_factory
        self._config: dict[str, Any] = kafka_config(settings, {
            "group.id": f"{settings.topic_prefix}foldflow-orchestrator-restore-"
                        f"{uuid.uuid4().hex}",  # never joined, never committed
            "client.id": "foldflow-orchestrator-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
            "logger": logging.getLogger("librdkafka"),
        })

    def close(self) -> None:
        """Nothing stays open between reads."""

    def restore(
        self, partitions: Iterable[int], *, timeout: float = 600.0,
        stopping: Callable[[], bool] = lambda: False,
    ) -> dict[int, Restored]:  # fmt: skip
        """Read each partition to its end; raises ``TimeoutError`` after ``timeout`` s, and
        :class:`Stopped` as soon as ``stopping()`` (a long read must not outlast SIGTERM)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in wanted}
        counts = dict.fromkeys(wanted, 0)
        consumer = self._factory(self._config)
        consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in wanted])
        open_ = set(wanted)
        deadline = time.monotonic() + timeout
        try:
            while open_:
                if stopping():
                    raise Stopped(f"stopped while restoring {self._topic} partitions {wanted}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"restoring {self._topic} partitions {sorted(open_)} took over {timeout}s"
                    )
                for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                    partition = msg.partition() or 0
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            open_.discard(partition)
                        else:
                            log.warning("restoring %s[%s]: %s", self._topic, partition, error)
                        continue
                    latest[partition][msg.key() or b""] = msg.value()
                    counts[partition] += 1
        finally:
            consumer.close()
        return {p: self._decode(p, latest[p], counts[p]) for p in wanted}

    def _decode(self, partition: int, latest: dict[bytes, bytes | None], count: int) -> Restored:
        restored = Restored(PartitionState(partition), records=count)
        part = restored.state
        definitions = [k for k in latest if k.startswith(DEFINITION_KEY_PREFIX)]
        others = [k for k in latest if not k.startswith(DEFINITION_KEY_PREFIX)]
        for key in definitions + others:  # states reference definitions: those first
            value = latest[key]
            if value is None:
                continue  # a tombstone
            try:
                record = decode_value(key, value, self._definitions)
            except (RecordError, UnicodeDecodeError) as exc:
                restored.unreadable += 1
                log.error("unreadable record %r on %s[%d]: %s", key[:80], self._topic,
                          partition, exc)  # fmt: skip
                continue
            if isinstance(record, DefinitionRecord):
                part.definitions.add(record.digest)
            elif isinstance(record, Finished):
                part.finished.add(record.workflow_id)
            elif isinstance(record, Live):
                part.live[record.state.workflow_id] = value
                if record.state.timers:
                    restored.timers.append((record.state.workflow_id, dict(record.state.timers)))
        return restored
