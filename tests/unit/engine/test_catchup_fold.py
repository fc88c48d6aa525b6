"""fold_events: a recovered table value catches up with the events it does not cover."""

from __future__ import annotations

from engine_harness import Run

from foldflow.definitions import Definition
from processors.decider.state import state_from_bytes, state_to_bytes
from processors.runtime.catchup import (
    fold_events,
    is_marker,
    marker_key,
    marker_offset,
    marker_value,
)
from processors.runtime.stored import Stored

CHAIN = Definition.load("""
name: chain
steps:
  - {id: a, task: t.a}
  - {id: b, task: t.b, after: [a]}
""")


def value(run: Run, offsets: tuple[int, int] = (3, 7)) -> bytes:
    return Stored(state_to_bytes(run.state), offsets).to_bytes()


def test_a_stale_value_catches_up_to_the_live_state_and_keeps_its_offsets() -> None:
    run = Run(CHAIN, "wf-1")
    run.start()
    stale = value(run)
    seen = len(run.history)
    run.succeed("a")
    changed = fold_events({b"wf-1": stale}.get, run.history)
    stored = Stored.from_bytes(changed[b"wf-1"])
    assert state_from_bytes(stored.state) == run.state
    assert stored.offsets == (3, 7)
    assert len(run.history) > seen  # there was something to fold


def test_the_input_behind_folded_events_is_then_recognised_as_applied() -> None:
    run = Run(CHAIN, "wf-1")
    run.start()
    stale = value(run)
    run.succeed("a")
    caught_up = state_from_bytes(Stored.from_bytes(
        fold_events({b"wf-1": stale}.get, run.history)[b"wf-1"]).state)  # fmt: skip
    assert run.last_message is not None
    assert run.last_message.event_id in caught_up.applied


def test_a_workflow_the_table_never_stored_is_folded_from_its_first_event() -> None:
    run = Run(CHAIN, "wf-new")
    run.start()
    run.succeed("a")
    changed = fold_events({}.get, run.history)
    assert state_from_bytes(Stored.from_bytes(changed[b"wf-new"]).state) == run.state
    assert Stored.from_bytes(changed[b"wf-new"]).offsets == (-1, -1)


def test_covered_events_change_nothing_and_a_gap_is_not_folded() -> None:
    run = Run(CHAIN, "wf-1")
    run.start()
    run.succeed("a")
    current = value(run)
    assert fold_events({b"wf-1": current}.get, run.history) == {}
    fresh = Run(CHAIN, "wf-1")
    fresh.start()
    gap = [e for e in run.history if (e.sequence or 0) > len(fresh.history) + 1]
    assert gap and fold_events({b"wf-1": value(fresh)}.get, gap) == {}


def test_events_of_several_workflows_fold_each_into_its_own_state() -> None:
    one, two = Run(CHAIN, "wf-1"), Run(CHAIN, "wf-2")
    one.start()
    two.start()
    stale = {b"wf-1": value(one), b"wf-2": value(two)}
    one.succeed("a")
    two.succeed("a")
    two.succeed("b")
    interleaved = sorted(one.history + two.history, key=lambda e: (e.sequence, e.workflow_id))
    changed = fold_events(stale.get, interleaved)
    assert state_from_bytes(Stored.from_bytes(changed[b"wf-1"]).state) == one.state
    assert state_from_bytes(Stored.from_bytes(changed[b"wf-2"]).state) == two.state


def test_markers() -> None:
    key = marker_key(3)
    assert is_marker(key) and not is_marker(b"wf-1")
    assert marker_offset(marker_value(1234)) == 1234
    assert marker_offset(None) is None
