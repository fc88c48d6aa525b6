"""Kept rows against real PostgreSQL: another writer of a partition makes them forgotten,
and a batch folded from them stores the rows a one-pass fold gives."""

from __future__ import annotations

from projection_support import SCENARIOS, interleave, records, reset_tables
from sqlalchemy import Engine, select

from foldflow.projections.apply import fold_batch
from foldflow.projections.cache import RowCache
from foldflow.projections.models import step_executions, workflow_instances
from foldflow.projections.store import BatchResult, Record, write_batch
from foldflow.schemas import messages as m

TP = ("wf.events", 0)


def write(engine: Engine, batch: list[Record], expected: int | None,
          rows: RowCache | None) -> BatchResult:
    with engine.begin() as conn:
        result = write_batch(conn, projection="cache-test", records=batch,
                             expected={TP: expected}, rows=rows)
    if rows is not None:
        rows.apply(result.cached)
    return result


def one_pass_rows(engine: Engine, batch: list[Record]) -> tuple[dict[str, object],
                                                                 dict[tuple[str, str], object]]:
    """The rows of ``batch`` written in one batch by a writer without a cache."""
    reset_tables(engine)
    write(engine, batch, None, None)
    return stored_rows(engine)


def stored_rows(engine: Engine) -> tuple[dict[str, object], dict[tuple[str, str], object]]:
    with engine.connect() as conn:
        instances = {r.id: tuple(r) for r in conn.execute(select(workflow_instances))}
        steps = {(r.workflow_id, r.step_id): tuple(r) for r in conn.execute(
            select(step_executions))}
    return instances, steps


def interleaved() -> list[m.Envelope]:
    """Every scenario's events, the workflows' turns interleaved as in a live partition."""
    return interleave([make(f"wf-{name}") for name, make in SCENARIOS.items()])


def test_rows_folded_from_the_cache_are_the_one_pass_rows(engine: Engine) -> None:
    events = interleaved()
    rows = RowCache()
    batch = records(events)
    position, most = None, 0
    for i in range(0, len(batch), 5):
        position = write(engine, batch[i:i + 5], position, rows).positions[TP]
        most = max(most, len(rows))
    assert most == len(SCENARIOS) and len(rows) == 0  # all kept while running; all ended
    cached = stored_rows(engine)
    assert set(cached[0]) == set(fold_batch({}, {}, events).instances)
    assert one_pass_rows(engine, batch) == cached


def test_another_writer_of_the_partition_makes_the_kept_rows_forgotten(engine: Engine) -> None:
    events = interleaved()
    batch = records(events)
    third = len(batch) // 3
    mine = RowCache()
    position = write(engine, batch[:third], None, mine).positions[TP]
    assert len(mine) > 0

    # another writer (a projector that took the partition over) goes on from there
    theirs = write(engine, batch[third:2 * third], position, None).positions[TP]

    # the first writer's next batch finds the position moved: nothing written, rows forgotten
    moved = write(engine, batch[third:2 * third], position, mine)
    assert moved.moved == {TP: theirs} and moved.events == 0
    assert len(mine) == 0

    # after its seek it folds the rest from PostgreSQL's rows, not from its stale ones
    write(engine, batch[2 * third:], theirs, mine)
    kept = stored_rows(engine)
    assert one_pass_rows(engine, batch) == kept
