"""The timer index: due order, staleness, ownership, re-arming, rebuild."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from processors.runtime.timers import DueTimer, TimerIndex, partition_for


def test_due_timers_come_in_due_order_and_only_when_due() -> None:
    index = TimerIndex()
    index.update("wf-a", partition=0, timers={"t1": 300, "t2": 100}, active=True)
    index.update("wf-b", partition=1, timers={"t1": 200}, active=True)
    assert index.pop_due(99, owned={0, 1}) == []
    assert index.pop_due(250, owned={0, 1}) == [
        DueTimer("wf-a", "t2", 100),
        DueTimer("wf-b", "t1", 200),
    ]
    assert index.pop_due(300, owned={0, 1}) == [DueTimer("wf-a", "t1", 300)]


def test_a_timer_that_left_the_state_or_moved_is_not_fired() -> None:
    index = TimerIndex()
    index.update("wf", partition=0, timers={"gone": 100, "moved": 100}, active=True)
    index.update("wf", partition=0, timers={"moved": 500}, active=True)
    assert index.pop_due(400, owned={0}) == []
    assert index.pop_due(500, owned={0}) == [DueTimer("wf", "moved", 500)]


def test_a_fired_timer_fires_again_after_the_refire_interval_until_it_leaves_the_state() -> None:
    index = TimerIndex(refire_ms=1_000)
    index.update("wf", partition=0, timers={"t": 100}, active=True)
    assert index.pop_due(100, owned={0}) == [DueTimer("wf", "t", 100)]
    assert index.pop_due(1_099, owned={0}) == []
    assert index.pop_due(1_100, owned={0}) == [DueTimer("wf", "t", 100)]
    index.update("wf", partition=0, timers={}, active=True)  # the fire was applied
    assert index.pop_due(10_000, owned={0}) == []


def test_timers_of_partitions_not_owned_are_dropped() -> None:
    index = TimerIndex()
    index.update("mine", partition=0, timers={"t": 100}, active=True)
    index.update("theirs", partition=1, timers={"t": 100}, active=True)
    assert index.pop_due(100, owned={0}) == [DueTimer("mine", "t", 100)]
    assert index.pop_due(100_000, owned={0, 1}) == [DueTimer("mine", "t", 100)]


def test_rebuild_replaces_everything_and_counts_active_workflows_per_owned_partition() -> None:
    index = TimerIndex()
    index.update("old", partition=0, timers={"t": 1}, active=True)
    index.rebuild([
        ("a", 0, {"t": 50}, True),
        ("b", 1, {}, True),
        ("c", 1, {}, False),  # finished, no timers: not even indexed
        ("d", 2, {"t": 70}, False),
    ])  # fmt: skip
    assert len(index) == 3
    assert index.active_count({0, 1, 2}) == 2
    assert index.active_count({1}) == 1
    assert index.pending_count() == 2
    assert index.pop_due(100, owned={0, 1, 2}) == [DueTimer("a", "t", 50), DueTimer("d", "t", 70)]


def test_finished_workflows_leave_the_index() -> None:
    index = TimerIndex()
    index.update("wf", partition=0, timers={"t": 10}, active=True)
    index.update("wf", partition=0, timers={}, active=False)
    assert len(index) == 0
    assert index.pending_count() == 0


def test_stale_heap_entries_are_compacted() -> None:
    index = TimerIndex()
    for due in range(5_000):  # one timer moved 5,000 times
        index.update("wf", partition=0, timers={"t": 10_000 + due}, active=True)
    assert len(index._heap) < 2_000
    assert index.pop_due(20_000, owned={0}) == [DueTimer("wf", "t", 14_999)]


def test_partition_for_is_the_murmur2_partitioner_of_aiokafka_and_java() -> None:
    partitioner = DefaultPartitioner()
    for i in range(200):
        key = f"wf-{i}".encode()
        assert partition_for(key, 6) == partitioner(key, list(range(6)), list(range(6)))
    # Kafka's own test vector: Utils.murmur2("21".getBytes()) == -973932308
    assert partition_for(b"21", 1_000_000) == (-973932308 & 0x7FFFFFFF) % 1_000_000
