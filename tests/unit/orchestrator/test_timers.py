"""The timer index: due order, staleness, ownership, re-arming, the next wake-up."""

from __future__ import annotations

from foldflow.processors.runtime.timers import DueTimer, TimerIndex


def test_due_timers_come_in_due_order_and_only_when_due() -> None:
    index = TimerIndex()
    index.update("wf-a", partition=0, timers={"t1": 300, "t2": 100})
    index.update("wf-b", partition=1, timers={"t1": 200})
    assert index.next_due() == 100
    assert index.pop_due(99, owned={0, 1}) == []
    assert index.pop_due(250, owned={0, 1}) == [
        DueTimer("wf-a", "t2", 100, 0),
        DueTimer("wf-b", "t1", 200, 1),
    ]
    assert index.pop_due(300, owned={0, 1}) == [DueTimer("wf-a", "t1", 300, 0)]


def test_a_timer_that_left_the_state_or_moved_is_not_fired() -> None:
    index = TimerIndex()
    index.update("wf", partition=0, timers={"gone": 100, "moved": 100})
    index.update("wf", partition=0, timers={"moved": 500})
    assert index.next_due() == 500  # the stale entries at 100 are skipped
    assert index.pop_due(400, owned={0}) == []
    assert index.pop_due(500, owned={0}) == [DueTimer("wf", "moved", 500, 0)]


def test_a_fired_timer_fires_again_after_the_refire_interval_until_it_leaves_the_state() -> None:
    index = TimerIndex(refire_ms=1_000)
    index.update("wf", partition=0, timers={"t": 100})
    assert index.pop_due(100, owned={0}) == [DueTimer("wf", "t", 100, 0)]
    assert index.next_due() == 1_100
    assert index.pop_due(1_099, owned={0}) == []
    assert index.pop_due(1_100, owned={0}) == [DueTimer("wf", "t", 100, 0)]
    index.update("wf", partition=0, timers={})  # the fire was applied
    assert index.pop_due(10_000, owned={0}) == []
    assert index.next_due() is None


def test_timers_whose_fire_was_aborted_are_due_again_at_once() -> None:
    index = TimerIndex(refire_ms=5_000)
    index.update("wf", partition=2, timers={"t": 100})
    fired = index.pop_due(150, owned={2})
    assert index.pop_due(200, owned={2}) == []
    index.rearm(fired, at=200)  # the transaction carrying the fire aborted
    assert index.next_due() == 200
    assert index.pop_due(200, owned={2}) == [DueTimer("wf", "t", 100, 2)]


def test_timers_of_partitions_not_owned_are_not_fired_and_leave_with_their_partition() -> None:
    index = TimerIndex()
    index.update("mine", partition=0, timers={"t": 100})
    index.update("theirs", partition=1, timers={"t": 100})
    assert index.pop_due(100, owned={0}) == [DueTimer("mine", "t", 100, 0)]
    index.remove_partition(1)
    assert index.pending_count() == 1
    assert index.pop_due(100_000, owned={0, 1}) == [DueTimer("mine", "t", 100, 0)]


def test_timers_kept_across_a_rebalance_fire_once_their_partition_is_owned_again() -> None:
    # The partition is revoked with its state retained; its timer comes due before the
    # partition is assigned back (the loop keeps turning meanwhile). It must still fire.
    index = TimerIndex()
    index.update("wf", partition=3, timers={"nap": 100})
    assert index.pop_due(150, owned=set()) == []  # revoked: not fired
    index.resume_partition(3)  # assigned back, retained state installed
    assert index.next_due() == 100
    assert index.pop_due(200, owned={3}) == [DueTimer("wf", "nap", 100, 3)]


def test_a_timer_scheduled_twice_fires_once_per_turn() -> None:
    index = TimerIndex()
    index.update("wf", partition=0, timers={"t": 100})
    index.resume_partition(0)  # a second heap item for the same timer
    assert index.pop_due(100, owned={0}) == [DueTimer("wf", "t", 100, 0)]


def test_a_restored_partition_adds_its_timers() -> None:
    index = TimerIndex()
    index.update("old", partition=0, timers={"t": 1})
    index.add_partition([("a", {"t": 50}), ("b", {}), ("c", {"x": 70, "y": 60})], partition=3)
    assert len(index) == 3  # "b" has no timer: not even indexed
    assert index.pending_count() == 4
    assert index.pop_due(100, owned={0, 3}) == [
        DueTimer("old", "t", 1, 0), DueTimer("a", "t", 50, 3),
        DueTimer("c", "y", 60, 3), DueTimer("c", "x", 70, 3),
    ]  # fmt: skip


def test_finished_workflows_leave_the_index() -> None:
    index = TimerIndex()
    index.update("wf", partition=0, timers={"t": 10})
    index.update("wf", partition=0, timers={})
    assert len(index) == 0
    assert index.pending_count() == 0


def test_stale_heap_entries_are_compacted() -> None:
    index = TimerIndex()
    for due in range(5_000):  # one timer moved 5,000 times
        index.update("wf", partition=0, timers={"t": 10_000 + due})
    assert len(index._heap) < 2_000
    assert index.pop_due(20_000, owned={0}) == [DueTimer("wf", "t", 14_999, 0)]
