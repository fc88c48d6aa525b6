"""Frozen rows and states copied with changes, without their ``__init__``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldflow.frozen import replace
from foldflow.processors.decider.state import StepState
from foldflow.projections.rows import StepRow

_AT = datetime(2026, 12, 5, tzinfo=UTC)


@given(status=st.text(max_size=8), attempts=st.integers(0, 10), started=st.booleans())
def test_it_gives_what_dataclasses_replace_gives(status: str, attempts: int,
                                                 started: bool) -> None:
    row = StepRow(workflow_id="wf-1", step_id="charge", status="pending", first_sequence=3)
    changes: dict[str, Any] = {"status": status, "attempts": attempts,
                               "started_at": _AT if started else None}
    copied = replace(row, **changes)
    expected = dataclasses.replace(row, **changes)
    assert (copied, hash(copied), repr(copied)) == (expected, hash(expected), repr(expected))
    assert row.status == "pending"  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.status = "x"  # type: ignore[misc]


def test_a_field_the_class_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match="StepState has no field colour, size"):
        replace(StepState(), status="running", size=1, colour="red")
