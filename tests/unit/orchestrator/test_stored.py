"""The table value: state bytes plus the last applied offset per input topic."""

from __future__ import annotations

import pytest

from processors.runtime.stored import COMMANDS, RESULTS, Stored


def test_round_trip_and_coverage() -> None:
    value = Stored(b"").advanced(b"state-1", COMMANDS, 41).advanced(b"state-2", RESULTS, 7)
    again = Stored.from_bytes(value.to_bytes())
    assert again == Stored(b"state-2", (41, 7))
    assert again.covers(COMMANDS, 41) and again.covers(COMMANDS, 0)
    assert not again.covers(COMMANDS, 42)
    assert again.covers(RESULTS, 7) and not again.covers(RESULTS, 8)


def test_a_fresh_value_covers_nothing_and_offsets_never_go_back() -> None:
    assert not Stored(b"").covers(COMMANDS, 0)
    value = Stored(b"s", (10, 3)).advanced(b"t", COMMANDS, 5)
    assert value.offsets == (10, 3)


def test_foreign_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="FFO1"):
        Stored.from_bytes(b'{"workflow_id": "x"}')
