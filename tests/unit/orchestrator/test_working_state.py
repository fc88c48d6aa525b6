"""The committed store and the open transaction: nothing changes before the commit."""

from __future__ import annotations

from engine_support import CHILD, TOPOLOGY, message, start

from foldflow.processors.decider import WorkflowState, apply_input
from foldflow.processors.runtime.records import (
    DefinitionTable,
    decode_live,
    finished_record,
    live_record,
)
from foldflow.processors.runtime.store import FINISHED, Change, PartitionState, Store, Transaction
from foldflow.schemas.messages import TaskSucceeded


def _change(state: WorkflowState, partition: int = 0, offsets: tuple[int, int] = (0, -1)
            ) -> Change:  # fmt: skip
    if state.status == "completed":
        return Change(partition, state, finished_record(state), offsets)
    digest = _TABLE.add(state.definition_json or "")
    return Change(partition, state, live_record(state, digest=digest, offsets=offsets),
                  offsets, digest)  # fmt: skip


_TABLE = DefinitionTable()


def _store(retention: float = 10.0) -> Store:
    store = Store(definitions=_TABLE, finished_retention_s=retention)
    store.install(PartitionState(0))
    store.install(PartitionState(1))
    return store


def test_a_transaction_changes_nothing_until_it_is_merged() -> None:
    store = _store()
    txn = Transaction(started=0.0)
    state = start("wf-1", CHILD)
    txn.change(_change(state))
    txn.advance("p.wf.commands", 0, 41)
    assert store.lookup("wf-1", 0) is None  # not committed: unknown
    assert store.position("p.wf.commands", 0) is None
    merged = store.merge(txn, now=1.0)
    assert [c.state.workflow_id for c in merged] == ["wf-1"]
    found = store.lookup("wf-1", 0)
    assert found is not FINISHED and found is not None
    assert found.state == state and found.offsets == (0, -1)  # type: ignore[union-attr]
    assert store.position("p.wf.commands", 0) == 42
    assert store.active() == 1


def test_an_aborted_transaction_is_dropped_without_a_trace() -> None:
    store = _store()
    kept = Transaction(started=0.0)
    kept.change(_change(start("wf-k", CHILD)))
    kept.advance("p.wf.commands", 0, 5)
    store.merge(kept, now=0.0)
    aborted = Transaction(started=1.0)  # what an abort drops: simply never merged
    aborted.change(_change(start("wf-a", CHILD)))
    aborted.advance("p.wf.commands", 0, 9)
    assert store.lookup("wf-a", 0) is None
    assert store.position("p.wf.commands", 0) == 6


def test_a_transaction_keeps_only_the_newest_state_of_each_workflow() -> None:
    txn = Transaction(started=0.0)
    first = start("wf-1", CHILD)
    done = TaskSucceeded(task_id="wf-1:x:run:1", step_id="x", attempt=1, kind="step")
    second = apply_input(first, message("wf-1", done, 2), definition=None,
                         topology=TOPOLOGY).state  # fmt: skip
    txn.change(_change(first))
    txn.change(_change(second, offsets=(0, 7)))
    assert list(txn.changes) == ["wf-1"]
    assert txn.changes["wf-1"].state == second  # one state record per workflow per commit


def test_finished_workflows_leave_memory_after_the_retention_but_stay_known() -> None:
    store = _store(retention=10.0)
    state = start("wf-f", CHILD)
    done = TaskSucceeded(task_id="wf-f:x:run:1", step_id="x", attempt=1, kind="step")
    final = apply_input(state, message("wf-f", done, 2), definition=None,
                        topology=TOPOLOGY).state  # fmt: skip
    txn = Transaction(started=0.0)
    txn.change(_change(final))
    store.merge(txn, now=100.0)
    assert store.active() == 0
    held = store.lookup("wf-f", 0)
    assert held is not None and held is not FINISHED
    assert held.state == final  # type: ignore[union-attr]  # held as a record, decoded
    assert held.offsets == (-1, -1)  # type: ignore[union-attr]  # no input needs skipping
    assert store.expire(now=109.0) == 0
    assert store.expire(now=110.0) == 1
    assert list(store.held()) == []
    assert store.lookup("wf-f", 0) is FINISHED  # only its id is left, and it is enough


def test_a_partition_let_go_takes_its_states_along() -> None:
    store = _store()
    txn = Transaction(started=0.0)
    txn.change(_change(start("wf-0", CHILD), partition=0))
    txn.change(_change(start("wf-1", CHILD), partition=1))
    store.merge(txn, now=0.0)
    part = store.remove(1)
    assert part is not None and "wf-1" in part.live
    assert store.lookup("wf-1", 1) is None and store.active() == 1
    late = Transaction(started=0.0)  # committed for a partition revoked meanwhile
    late.change(_change(start("wf-9", CHILD), partition=1))
    assert store.merge(late, now=0.0) == []
    store.install(part)
    assert decode_live(store.partitions[1].live["wf-1"], _TABLE).state.workflow_id == "wf-1"
