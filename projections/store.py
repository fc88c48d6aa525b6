"""One batch of records into PostgreSQL: one transaction, bulk statements, offsets included.

:func:`write_batch` runs inside a transaction the caller opened. It locks the batch's
rows of ``projection_offsets`` first, so two writers of one partition (a zombie consumer
after a rebalance, the live projector meeting a freshly swapped-in rebuild) serialise,
and a writer whose idea of the position differs from the stored one writes nothing for
that partition and is told where to seek: the database, not Kafka, owns the positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from foldflow.observability.outcomes import FAILURE_EVENTS, TERMINAL_EVENTS, Outcome, outcome
from projections.apply import EventRow, InstanceRow, StepRow, definition_row, fold_batch
from projections.models import (
    projection_offsets,
    step_executions,
    workflow_definitions,
    workflow_events,
    workflow_instances,
)
from schemas import messages as m

__all__ = [
    "BatchResult",
    "Record",
    "TopicPartition",
    "definition_names",
    "read_offsets",
    "write_batch",
]

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record; ``envelope`` is None when it went to the DLQ (offset only)."""

    topic: str
    partition: int
    offset: int
    envelope: m.Envelope | None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class BatchResult:
    """What a batch did: counts, the new positions, and the partitions to re-seek."""

    events: int = 0
    skipped: int = 0
    definitions: int = 0
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    moved: dict[TopicPartition, int | None] = field(default_factory=dict)
    #: the last applied event timestamp (ms) per partition of the events topic
    last_timestamps: dict[TopicPartition, int] = field(default_factory=dict)
    timestamps: list[int] = field(default_factory=list)
    #: (definition name, outcome) of each workflow this batch ended, once per workflow
    finished: list[tuple[str, Outcome]] = field(default_factory=list)
    #: the definitions this batch registered or started a workflow of
    started: set[str] = field(default_factory=set)


def _row(obj: object) -> dict[str, Any]:
    """A frozen row dataclass as statement parameters (shallow: no deep copy of JSON)."""
    return dict(vars(obj))


def read_offsets(
    conn: Connection, projection: str, tps: Sequence[TopicPartition], *, lock: bool = False
) -> dict[TopicPartition, int]:
    """The stored next offsets of ``tps`` (absent: never stored)."""
    if not tps:
        return {}
    t = projection_offsets
    query = select(t.c.topic, t.c.partition, t.c.next_offset).where(
        t.c.projection == projection, tuple_(t.c.topic, t.c.partition).in_(list(tps))
    )
    if lock:
        query = query.with_for_update()
    return {(r.topic, r.partition): r.next_offset for r in conn.execute(query)}


def definition_names(conn: Connection) -> set[str]:
    """The name of every registered definition (of any tenant)."""
    wd = workflow_definitions
    return {str(name) for name in conn.execute(select(wd.c.name).distinct()).scalars()}


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert(table)
    keys = {c.name for c in table.primary_key.columns}
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )
    conn.execute(stmt, list(rows))


def _load(conn: Connection, workflow_ids: list[str]) -> tuple[
    dict[str, InstanceRow], dict[tuple[str, str], StepRow]
]:
    wi, se = workflow_instances, step_executions
    instances = {
        r.id: InstanceRow(**r._asdict())
        for r in conn.execute(select(wi).where(wi.c.id.in_(workflow_ids)))
    }
    steps = {
        (r.workflow_id, r.step_id): StepRow(**r._asdict())
        for r in conn.execute(select(se).where(se.c.workflow_id.in_(workflow_ids)))
    }
    return instances, steps


def _finished(
    conn: Connection, events: Sequence[EventRow], instances: Mapping[str, InstanceRow]
) -> list[tuple[str, Outcome]]:
    """The outcome of each workflow a terminal event of ``events`` ended. A failure's cause
    comes from the workflow's stored history (this transaction's rows included); the
    other ends need no reading."""
    ended = [e for e in events if e.event_type in TERMINAL_EVENTS]
    if not ended:
        return []
    failing = [e.workflow_id for e in ended
               if TERMINAL_EVENTS[e.event_type] in ("failed", "compensated", "compensation_failed")]
    histories: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    if failing:
        we = workflow_events
        rows = conn.execute(
            select(we.c.workflow_id, we.c.event_type, we.c.payload)
            .where(we.c.workflow_id.in_(failing), we.c.event_type.in_(sorted(FAILURE_EVENTS)))
            .order_by(we.c.workflow_id, we.c.sequence)
        )
        for row in rows:
            histories.setdefault(row.workflow_id, []).append((row.event_type, row.payload))
    finished: list[tuple[str, Outcome]] = []
    for e in ended:
        status = TERMINAL_EVENTS[e.event_type]
        found = outcome(histories.get(e.workflow_id) or [(e.event_type, e.payload)])
        instance = instances.get(e.workflow_id)
        definition = instance.definition_name if instance is not None else ""
        finished.append((definition or "unknown", found or Outcome(status, "invalid")))
    return finished


def write_batch(
    conn: Connection,
    *,
    projection: str,
    records: Sequence[Record],
    expected: Mapping[TopicPartition, int | None],
    now: datetime | None = None,
) -> BatchResult:
    """Apply ``records`` and store the positions after them, in the caller's transaction.

    ``expected`` is the writer's idea of each partition's stored next offset (None: none
    stored). A partition whose stored offset differs is left out and reported in
    ``moved``. Raises :class:`projections.apply.ProjectionError` (a gap): roll back.
    """
    result = BatchResult()
    tps = sorted({(r.topic, r.partition) for r in records})
    stored = read_offsets(conn, projection, tps, lock=True)
    for tp in tps:
        if stored.get(tp) != expected.get(tp):
            result.moved[tp] = stored.get(tp)
    kept = [
        r for r in records
        if (r.topic, r.partition) not in result.moved
        and r.offset >= (stored.get((r.topic, r.partition)) or 0)
    ]
    events: list[m.Envelope] = []
    definitions: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in kept:
        tp = (r.topic, r.partition)
        result.positions[tp] = max(result.positions.get(tp, 0), r.offset + 1)
        env = r.envelope
        if env is None:
            continue
        if isinstance(env.payload, m.DefinitionRegistered):
            row = definition_row(env)
            definitions[(row.tenant, row.name, row.version)] = _row(row)
        else:
            events.append(env)
            result.last_timestamps[tp] = max(result.last_timestamps.get(tp, 0), env.timestamp)

    if events:
        instances, steps = _load(conn, sorted({e.workflow_id for e in events}))
        fold = fold_batch(instances, steps, events)
        _upsert(conn, workflow_instances, [_row(i) for i in fold.instances.values()])
        _upsert(conn, step_executions, [_row(s) for s in fold.steps.values()])
        if fold.events:
            conn.execute(insert(workflow_events), [_row(e) for e in fold.events])
        result.events = len(fold.events)
        result.skipped = fold.skipped
        result.timestamps = [int(e.timestamp.timestamp() * 1000) for e in fold.events]
        result.finished = _finished(conn, fold.events, fold.instances)
        result.started |= {str(e.payload.get("definition_name"))
                           for e in fold.events if e.event_type == "workflow.started.v1"}
    _upsert(conn, workflow_definitions, list(definitions.values()))
    result.started |= {name for _, name, _ in definitions}
    result.definitions = len(definitions)

    at = now or datetime.now(UTC)
    _upsert(
        conn,
        projection_offsets,
        [
            {"projection": projection, "topic": t, "partition": p, "next_offset": o,
             "updated_at": at}
            for (t, p), o in sorted(result.positions.items())
        ],
    )
    return result
