"""Following workflows on ``wf.events`` from the CLI, without the gateway or projections.

:class:`EventFollower` reads only the partitions the watched workflow ids map to (murmur2
of the key, as every Foldflow producer partitions), from the log end at the moment a
workflow is watched — so watch *before* publishing the command that starts it.
:func:`track` folds one workflow's events into a :class:`Progress` (status, steps,
attempts, timings): a pure function the CLI and the demo share.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from foldflow.kafka import kafka_config
from foldflow.partitioner import partition_for
from foldflow.schemas import codec
from foldflow.schemas.messages import (
    TERMINAL_STATUS,
    Envelope,
    StepAttemptFailed,
    StepCompleted,
    StepScheduled,
    WorkflowCompleted,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
)
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["EventFollower", "Progress", "partition_for", "track"]


@dataclass(frozen=True)
class Progress:
    """What the events of one workflow said so far."""

    workflow_id: str
    definition: str | None = None
    status: str = "pending"
    started_ms: int | None = None
    finished_ms: int | None = None
    steps_completed: frozenset[str] = field(default_factory=frozenset)
    attempts: int = 0
    failed_attempts: int = 0
    events: int = 0
    output: Any = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        """True once a terminal event arrived."""
        return self.status in TERMINAL_STATUS.values()

    @property
    def duration_s(self) -> float | None:
        """Event time from started to terminal, in seconds (None until both are known)."""
        if self.started_ms is None or self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000


def track(progress: Progress, event: Envelope) -> Progress:
    """Fold one ``wf.events`` envelope of ``progress.workflow_id`` into ``progress``."""
    p, payload = event.payload, replace(progress, events=progress.events + 1)
    match p:
        case WorkflowStarted():
            return replace(
                payload,
                status="running",
                started_ms=event.timestamp,
                definition=f"{p.definition_name}:{p.definition_version}",
            )
        case WorkflowPaused():
            return replace(payload, status="paused")
        case WorkflowResumed():
            return replace(payload, status="running")
        case StepScheduled():
            return replace(payload, attempts=payload.attempts + 1)
        case StepAttemptFailed():
            return replace(payload, failed_attempts=payload.failed_attempts + 1)
        case StepCompleted():
            return replace(payload, steps_completed=payload.steps_completed | {p.step_id})
        case _ if type(p) in TERMINAL_STATUS:
            output = json.loads(p.output_json) if isinstance(p, WorkflowCompleted) else None
            error = getattr(p, "error", None) or getattr(p, "reason", None)
            return replace(
                payload,
                status=TERMINAL_STATUS[type(p)],
                finished_ms=event.timestamp,
                output=output,
                error=error,
            )
    return payload


class EventFollower:
    """Reads the ``wf.events`` records of the watched workflows, in order per workflow.

    Each partition a watched id maps to is assigned once, at its log end when first
    needed; records of other workflows on it are skipped, undecodable ones are counted.
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.topic = Topology.of(settings).events
        self._timeout = timeout
        self._consumer = Consumer(kafka_config(settings, {
            "group.id": f"foldflow-cli-follow-{uuid.uuid4().hex}",  # never committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # the orchestrator writes in transactions
        }))  # fmt: skip
        metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaException(f"topic {self.topic} is missing (run `foldflow topics ensure`)")
        self.partitions = len(topic.partitions)
        self._assigned: dict[int, int] = {}
        self._watched: set[str] = set()
        self.undecodable = 0

    def watch(self, workflow_ids: Iterable[str]) -> None:
        """Follow these workflows from now on (their partitions from the current log end)."""
        ids = list(workflow_ids)
        self._watched.update(ids)
        new = sorted({partition_for(i, self.partitions) for i in ids} - set(self._assigned))
        for partition in new:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self._timeout
            )
            self._assigned[partition] = high if high >= 0 else OFFSET_END
        if new:
            self._consumer.incremental_assign(
                [TopicPartition(self.topic, p, self._assigned[p]) for p in new]
            )

    def poll(self, timeout: float = 1.0, *, max_records: int = 500) -> list[Envelope]:
        """The next watched events (possibly none within ``timeout`` seconds)."""
        records = self._consumer.consume(num_messages=max_records, timeout=timeout)
        events: list[Envelope] = []
        for record in records:
            if record.error() is not None:
                continue
            key = record.key()
            if key is None or key.decode(errors="replace") not in self._watched:
                continue
            try:
                events.append(codec.decode(record.value() or b""))
            except codec.CodecError:
                self.undecodable += 1
        return events

    def close(self) -> None:
        """Leave (nothing is committed)."""
        self._consumer.close()

    def __enter__(self) -> EventFollower:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
