"""InputOrder: holes in an input partition's offsets are filled from the log, in order.

The reader is a fake holding a partition's log in memory; the real HoleReader is tested
against a broker in tests/integration/orchestrator/test_hole_reader.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processors.runtime import holes
from processors.runtime.holes import HoleError, InputOrder
from processors.runtime.runner import InputRecord

T = "wf.results"


def rec(offset: int, partition: int = 0, topic: str = T) -> InputRecord:
    return InputRecord(topic, partition, offset, b"k", str(offset).encode(), [])


class FakeLog:
    """``read`` answers from a log of offsets 0..99; ``failures`` reads fail first."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.reads: list[tuple[str, int, int, int]] = []

    def read(self, topic: str, partition: int, start: int, end: int) -> list[InputRecord]:
        self.reads.append((topic, partition, start, end))
        if self.failures:
            self.failures -= 1
            raise HoleError("broker away")
        return [rec(o, partition, topic) for o in range(start, end)]


def order(log: FakeLog, *, start: int = 0, owned: bool = True, stall_s: float = 60.0) -> InputOrder:
    async def first(_topic: str, _partition: int) -> int:
        return start

    return InputOrder(log, owned=lambda _t, _p: owned, start=first,  # type: ignore[arg-type]
                      stall_s=stall_s)  # fmt: skip


def offsets(records: list[InputRecord]) -> list[int]:
    return [r.offset for r in records]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_contiguous_records_pass_unchanged() -> None:
    log = FakeLog()
    o = order(log, start=5)
    assert offsets(run(o.in_order([rec(5), rec(6), rec(7)]))) == [5, 6, 7]
    assert log.reads == [] and o.take_filled() == []
    assert o.expected[(T, 0)] == 8


def test_a_jump_is_filled_before_the_record_that_revealed_it() -> None:
    log = FakeLog()
    o = order(log, start=2)
    assert offsets(run(o.in_order([rec(2), rec(6), rec(7)]))) == [2, 3, 4, 5, 6, 7]
    assert log.reads == [(T, 0, 3, 6)]
    assert o.take_filled() == [(T, 0, 3, 6)]
    assert o.take_filled() == []  # handed over once


def test_a_hole_at_the_start_after_a_recovery_is_filled_from_the_committed_offset() -> None:
    o = order(FakeLog(), start=10)
    assert offsets(run(o.in_order([rec(18)]))) == list(range(10, 19))


def test_replayed_records_pass_without_moving_the_position() -> None:
    log = FakeLog()
    o = order(log, start=0)
    run(o.in_order([rec(0), rec(1), rec(2)]))
    assert offsets(run(o.in_order([rec(1), rec(2), rec(3)]))) == [1, 2, 3]
    assert log.reads == [] and o.expected[(T, 0)] == 4


def test_partitions_are_tracked_apart() -> None:
    o = order(FakeLog(), start=0)
    records = [rec(0, 0), rec(0, 1), rec(2, 0), rec(1, 1)]
    assert [(r.partition, r.offset) for r in run(o.in_order(records))] == [
        (0, 0), (1, 0), (0, 1), (0, 2), (1, 1)
    ]


def test_records_of_a_revoked_partition_pass_untouched() -> None:
    log = FakeLog()
    o = order(log, start=0, owned=False)
    assert offsets(run(o.in_order([rec(7)]))) == [7]
    assert log.reads == [] and o.expected == {}


def test_a_failing_read_is_retried_until_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holes, "RETRY_MIN_S", 0.001)
    log = FakeLog(failures=2)
    o = order(log, start=0)
    assert offsets(run(o.in_order([rec(3)]))) == [0, 1, 2, 3]
    assert len(log.reads) == 3


def test_a_stalled_partition_is_read_up_to_its_end_once_it_stalled_long_enough() -> None:
    async def scenario() -> None:
        waiting, stalled = order(FakeLog(), start=4), order(FakeLog(), start=4, stall_s=0.0)
        assert await waiting.stalled({(T, 0): 9}) == []  # behind, but not for long yet
        assert offsets(await stalled.stalled({(T, 0): 9})) == [4, 5, 6, 7, 8]
        assert stalled.expected[(T, 0)] == 9 and stalled.take_filled() == [(T, 0, 4, 9)]
        assert await stalled.stalled({(T, 0): 9}) == []  # caught up: nothing more

    run(scenario())


def test_a_partition_at_its_end_or_moving_is_not_stalled() -> None:
    async def scenario() -> None:
        log = FakeLog()
        o = order(log, start=4, stall_s=0.05)
        assert await o.stalled({(T, 0): 4}) == []
        assert await o.stalled({(T, 0): 6}) == []  # behind from now on
        await o.in_order([rec(4)])  # ... but it moved
        await asyncio.sleep(0.06)
        assert await o.stalled({(T, 0): 6}) == []  # behind again since now only
        await asyncio.sleep(0.06)
        assert offsets(await o.stalled({(T, 0): 6})) == [5]
        assert log.reads == [(T, 0, 5, 6)]

    run(scenario())


def test_a_rebalance_forgets_only_the_revoked_partitions() -> None:
    owned = {0, 1}
    o = InputOrder(FakeLog(), owned=lambda _t, p: p in owned,  # type: ignore[arg-type]
                   start=lambda _t, _p: asyncio.sleep(0, 0))  # fmt: skip
    run(o.in_order([rec(0, 0), rec(0, 1), rec(1, 1)]))
    owned.discard(1)
    o.forget_revoked()
    assert o.expected == {(T, 0): 1}
