"""The records one decided input produces, built and checked before anything is produced.

A record that the broker would refuse poisons the whole Kafka transaction it is part of,
so every output of an input (events, task commands, child commands, its state record) is
encoded and measured first: a value Avro cannot encode, or a record over
``orchestrator_max_message_bytes``, is an :class:`Unproducible` for that one input, and
the loop fails that one workflow instead (docs/internals.md). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from foldflow.schemas.codec import CodecError, encode
from foldflow.schemas.messages import TYPE_NAMES, Envelope, ExecuteTask, StepScheduled

__all__ = ["RECORD_OVERHEAD", "OutputRecord", "Unproducible", "build_records", "check_size"]

#: Bytes a record costs in a batch beyond its key, value and headers (generous: the
#: record header's varints, attributes, timestamp and offset deltas).
RECORD_OVERHEAD = 64

_EVENT_TYPES = {cls: name.encode() for cls, name in TYPE_NAMES.items()}


class Unproducible(ValueError):
    """An output of an input cannot be produced, whatever is tried again."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record to produce in the open transaction."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    partition: int | None = None  # None: the partitioner decides from the key

    @property
    def size(self) -> int:
        """What the record weighs against the producer's message size limit."""
        head = sum(len(name) + len(value) for name, value in self.headers)
        return len(self.key) + len(self.value or b"") + head + RECORD_OVERHEAD


def describe(topic: str, envelope: Envelope) -> str:
    """How an error message names one output."""
    payload = envelope.payload
    what = envelope.event_type
    if isinstance(payload, ExecuteTask | StepScheduled):
        what += f" of step {payload.step_id}"
    return f"{what} to {topic}"


def check_size(record: OutputRecord, *, limit: int, what: str) -> None:
    """Raise :class:`Unproducible` when ``record`` is over ``limit`` bytes."""
    if record.size > limit:
        raise Unproducible(
            f"{what} is {record.size:,} bytes, over the {limit:,}-byte record limit "
            "(orchestrator_max_message_bytes)"
        )


def build_records(
    messages: Iterable[tuple[str, Envelope]],
    *,
    trace_headers: Sequence[tuple[str, bytes]],
    limit: int,
) -> list[OutputRecord]:
    """Encode ``(topic, envelope)`` pairs into records keyed by workflow id, checked.

    Raises :class:`Unproducible` naming the first output that cannot be encoded or is
    over ``limit`` bytes.
    """
    out: list[OutputRecord] = []
    for topic, envelope in messages:
        try:
            value = encode(envelope)
        except CodecError as exc:
            raise Unproducible(f"{describe(topic, envelope)} cannot be encoded: {exc}") from exc
        headers = [("event_type", _EVENT_TYPES[type(envelope.payload)]), *trace_headers]
        record = OutputRecord(topic, envelope.workflow_id.encode(), value, headers)
        check_size(record, limit=limit, what=describe(topic, envelope))
        out.append(record)
    return out
