"""The opaque keyset cursor of ``foldflow.projections.queries.list_workflows``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from foldflow.projections.queries import InvalidCursorError, decode_cursor, encode_cursor


@pytest.mark.parametrize("wid", ["wf-1", "a/b:c", "ünï", "x" * 200])
def test_round_trip(wid: str) -> None:
    at = datetime(2026, 11, 29, 1, 2, 3, 456000, tzinfo=UTC)
    cursor = encode_cursor(at, wid)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # URL-safe
    assert decode_cursor(cursor) == (at, wid)


def test_other_time_zones_compare_equal() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert decode_cursor(encode_cursor(at, "w"))[0] == at.astimezone(UTC)


@pytest.mark.parametrize("bad", ["", "!!!", "bm90IGEgY3Vyc29y", "WyJ4Il0", "WzEsMl0",
                                 "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwidyJd"])
def test_garbage_is_refused(bad: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(bad)
