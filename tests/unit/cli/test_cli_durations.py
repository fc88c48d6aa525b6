"""The one duration syntax shared by definitions, the gateway and the CLI."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldflow.cli.dlq import parse_since
from foldflow.definitions import parse_duration
from foldflow.durations import (
    DURATION_PATTERN,
    MAX_DURATION_MS,
    DurationTooLong,
    parse_duration_ms,
    parse_seconds,
)
from foldflow.gateway.routes.workflows import parse_timeout


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("2h", 7_200_000),
        ("1d", 86_400_000), ("1h30m", 5_400_000), ("2m30s", 150_000), ("1h 30m", 5_400_000),
        ("1.5s", 1500), ("90", 90_000), ("0.25", 250), (" 7s ", 7000), ("1m5s250ms", 65_250),
        (0, 0), (1.5, 1500), (3, 3000),
    ],
)  # fmt: skip
def test_every_accepted_form(value: object, ms: int) -> None:
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize(
    "value",
    ["", "s", "ten seconds", "1e3s", "5 minutes", "1.2.3s", "10x", "30m1h", "1m1m", "-1s", -1,
     True, None, [], float("nan"), "99999999999999999999d"],
)  # fmt: skip
def test_everything_else_is_refused_with_the_syntax(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(value)


def test_the_bound_is_ten_years() -> None:
    assert parse_duration_ms("3650d") == MAX_DURATION_MS
    with pytest.raises(ValueError, match="at most 3650d"):
        parse_duration_ms("3651d")
    with pytest.raises(ValueError, match="at most 3650d"):
        parse_duration_ms(MAX_DURATION_MS)  # seconds, not ms


@pytest.mark.parametrize("text", ["500ms", "30s", "15m", "2h", "1d", "1h30m", "90", "1h 30m"])
def test_the_three_former_parsers_now_agree(text: str) -> None:
    """Definitions, the gateway's ?timeout= and the CLI's --since read the same text alike."""
    ms = parse_duration_ms(text)
    assert parse_duration(text) == ms
    assert parse_timeout(text) == pytest.approx(ms / 1000) == parse_seconds(text)
    assert parse_since(text, now_ms=10**13) == 10**13 - ms
    assert re.fullmatch(DURATION_PATTERN, text)  # what the OpenAPI document tells clients


@given(st.from_regex(DURATION_PATTERN, fullmatch=True))
def test_whatever_the_published_pattern_admits_parses(text: str) -> None:
    """A client that validates against the OpenAPI ``pattern`` is never refused by the parser
    (a unit out of order once passed the pattern and got a 422)."""
    with contextlib.suppress(DurationTooLong):  # well-formed, only long: a wait caps it
        assert parse_duration_ms(text) >= 0


@pytest.mark.parametrize("text", ["30m1h", "1m1m", "1ms1s", "5s 2m", "", "  ", "5m s"])
def test_the_published_pattern_refuses_units_out_of_order(text: str) -> None:
    assert re.fullmatch(DURATION_PATTERN, text) is None
