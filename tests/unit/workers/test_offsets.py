"""In-order commit points."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldflow.workers.offsets import PartitionOffsets


def test_commit_point_waits_for_the_earliest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for o in (10, 11, 12):
        offsets.start(o)
    offsets.finish(12)
    offsets.finish(11)
    assert offsets.to_commit() is None
    assert offsets.in_flight == 1
    offsets.finish(10)
    assert offsets.to_commit() == 13
    offsets.committed(13)
    assert offsets.to_commit() is None
    assert offsets.commit_point == 13
    assert offsets.in_flight == 0


def test_offsets_must_increase() -> None:
    offsets = PartitionOffsets()
    offsets.start(5)
    with pytest.raises(ValueError):
        offsets.start(5)


def test_finishing_an_unknown_offset_changes_nothing() -> None:
    offsets = PartitionOffsets()
    offsets.start(1)
    offsets.finish(7)
    assert offsets.to_commit() is None


@given(st.permutations(list(range(20))), st.integers(min_value=0, max_value=20))
def test_never_commits_past_an_unfinished_offset(order: list[int], done: int) -> None:
    offsets = PartitionOffsets()
    for o in range(20):
        offsets.start(o)
    finished = order[:done]
    for o in finished:
        offsets.finish(o)
    point = offsets.commit_point
    unfinished = set(range(20)) - set(finished)
    expected = min(unfinished) if unfinished else 20
    assert (point or 0) == expected
