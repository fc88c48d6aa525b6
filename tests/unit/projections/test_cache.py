"""The projector's kept rows: what enters, what leaves, and that folding from them gives
the rows folding from PostgreSQL would (the database side is in the integration tests)."""

from __future__ import annotations

from collections.abc import Sequence

from projection_support import SCENARIOS, completed

from foldflow.projections.apply import InstanceRow, StepRow, fold_batch
from foldflow.projections.cache import RowCache
from foldflow.schemas import messages as m

TP = ("wf.events", 0)


def fold_through(cache: RowCache, batch: Sequence[m.Envelope], *,
                 stored: dict[str, InstanceRow] | None = None,
                 stored_steps: dict[tuple[str, str], StepRow] | None = None,
                 size: int = 100, tp: tuple[str, int] = TP) -> None:
    """One batch as the store folds it: kept rows first, ``stored`` for the rest."""
    where = {e.workflow_id: tp for e in batch}
    instances, steps = cache.lookup(where)
    for wid, row in (stored or {}).items():
        if wid in where and wid not in instances:
            instances[wid] = row
            steps.update({k: v for k, v in (stored_steps or {}).items() if k[0] == wid})
    fold = fold_batch(instances, steps, batch)
    sizes: dict[str, int] = {}
    for e in batch:
        sizes[e.workflow_id] = sizes.get(e.workflow_id, 0) + size
    cache.apply(cache.update(fold, before=instances, where=where, sizes=sizes))


def test_folding_batch_by_batch_from_kept_rows_gives_the_one_pass_rows() -> None:
    scripts = [make(f"wf-{name}") for name, make in SCENARIOS.items()]
    whole = fold_batch({}, {}, [e for s in scripts for e in s.events])
    cache = RowCache()
    for n in range(max(len(s.events) for s in scripts) - 1):  # all but each last event
        batch = [s.events[n] for s in scripts if n < len(s.events) - 1]
        fold_through(cache, batch)
    for s in scripts:
        instances, steps = cache.lookup({s.key: TP})
        before_last = fold_batch({}, {}, s.events[:-1])
        if before_last.instances[s.key].status in ("running", "paused", "compensating"):
            assert instances[s.key] == before_last.instances[s.key]
            assert steps == before_last.steps
            assert fold_batch(instances, steps, s.events[-1:]).instances[s.key] == (
                whole.instances[s.key])
        else:
            assert instances == {}  # ended: left the cache


def test_a_workflow_that_ends_leaves() -> None:
    cache = RowCache()
    s = completed("wf-1")
    fold_through(cache, s.events[:-1])
    assert len(cache) == 1
    fold_through(cache, s.events[-1:])
    assert len(cache) == 0


def test_a_workflow_read_from_postgresql_is_not_kept() -> None:
    """Its rows may be older than this writer: only workflows seen starting are kept."""
    cache = RowCache()
    s = completed("wf-1")
    read = fold_batch({}, {}, s.events[:2])
    fold_through(cache, s.events[2:4], stored=read.instances, stored_steps=read.steps)
    assert len(cache) == 0


def test_a_workflow_past_the_byte_bound_leaves() -> None:
    cache = RowCache(max_bytes=300)
    s = completed("wf-1")
    fold_through(cache, s.events[:2], size=100)
    assert len(cache) == 1
    fold_through(cache, s.events[2:3], size=100)
    assert len(cache) == 1
    fold_through(cache, s.events[3:4], size=100)  # 400 bytes folded: over the bound
    assert len(cache) == 0


def test_the_least_recently_used_leave_past_the_count_bound() -> None:
    cache = RowCache(max_workflows=2)
    a, b, c = completed("a"), completed("b"), completed("c")
    fold_through(cache, a.events[:1] + b.events[:1])
    fold_through(cache, a.events[1:2])  # a used after b
    fold_through(cache, c.events[:1])
    assert set(cache.lookup({a.key: TP, b.key: TP, c.key: TP})[0]) == {a.key, c.key}


def test_forgetting_a_partition_drops_only_its_rows() -> None:
    cache = RowCache()
    a, b = completed("a"), completed("b")
    fold_through(cache, a.events[:2], tp=("wf.events", 0))
    fold_through(cache, b.events[:2], tp=("wf.events", 1))
    cache.forget(("wf.events", 0))
    assert set(cache.lookup({a.key: ("wf.events", 0), b.key: ("wf.events", 1)})[0]) == {b.key}
