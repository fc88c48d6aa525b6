"""``foldflow.jsonsafe``: the one check every door uses for values no downstream can store."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foldflow import jsonsafe
from foldflow.limits import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES
from foldflow.schemas.messages import dump_json

pytestmark = pytest.mark.unit


def _problems_of(text: str) -> list[tuple[str, str]]:
    try:
        jsonsafe.loads(text)
    except jsonsafe.UnsafeJson as exc:
        return [(p.path, p.message) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("text", "path", "says"),
    [
        ('{"x": NaN}', "x", "NaN"),
        ('{"x": Infinity}', "x", "Infinity"),
        ('{"x": [0, -Infinity]}', "x[1]", "-Infinity"),
        ('{"x": 1e999}', "x", "finite"),
        ('{"x": -1e400}', "x", "finite"),
        ('{"x": "a\\u0000"}', "x", "NUL"),
        ('{"x": "\\udc00"}', "x", "surrogate"),
        ('{"x": "\\ud83d"}', "x", "surrogate"),
        ('{"x\\u0000": 1}', '["x\\u0000"]', "NUL"),
        ('{"x": ' + "1" * 101 + "}", "x", "at most 100 characters"),
        ('{"x": 1.' + "5" * 200 + "}", "x", "at most 100 characters"),
        ('{"a b": {"c.d": NaN}}', '["a b"]["c.d"]', "NaN"),
    ],
)
def test_values_no_downstream_can_store_are_named_by_path(text: str, path: str, says: str) -> None:
    [(where, message)] = _problems_of(text)

    assert where == path and says in message


def test_a_valid_pair_of_surrogates_and_other_unicode_pass() -> None:
    assert jsonsafe.loads('{"emoji": "\\ud83d\\ude00", "é": "ü", "n": 1e308, "i": -12}') == {
        "emoji": "😀", "é": "ü", "n": 1e308, "i": -12,
    }  # fmt: skip


def test_every_problem_is_reported_in_document_order() -> None:
    found = _problems_of('{"a": NaN, "b": [1, "\\u0000", {"c": Infinity}], "d": "\\ud800"}')

    assert [path for path, _ in found] == ["a", "b[1]", "b[2].c", "d"]


def test_nesting_is_bounded_with_the_deepest_allowed_level_accepted() -> None:
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    too_deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    far_too_deep = "[" * 100_000 + "]" * 100_000  # past Python's own recursion limit

    assert _problems_of(ok) == []
    [(path, message)] = _problems_of(too_deep)
    assert path == "[0]" * MAX_JSON_DEPTH and "deeper than 64" in message
    assert "deeper than 64" in _problems_of(far_too_deep)[0][1]


def test_malformed_json_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonsafe.loads('{"x": ')


def test_parsed_values_from_yaml_are_checked_too() -> None:
    value = {"when": dt.date(2024, 1, 1), 3: "x", "big": 10**200, "nan": float("nan")}

    found = {(p.path, p.message) for p in jsonsafe.problems(value, path="steps[0]")}

    assert ("steps[0].when", "not a JSON value (date)") in found
    assert ("steps[0]", "an object key is a string, not int") in found
    assert ("steps[0].big", "a number is at most 100 digits") in found
    assert any(p == "steps[0].nan" for p, _ in found)


def test_the_walk_stops_after_max_values_even_on_shared_references() -> None:
    layer: Any = ["x"] * 10
    for _ in range(9):  # a billion values reachable through shared lists (YAML aliases)
        layer = [layer] * 10

    found = jsonsafe.problems(layer, max_values=10_000)

    assert [p.message for p in found] == ["holds more than 10000 values"]


def test_reported_problems_are_capped() -> None:
    found = jsonsafe.problems([float("nan")] * 1000, limit=7)

    assert len(found) == 7


def test_the_size_bound_is_measured_on_canonical_utf8_json() -> None:
    fits = {"s": "x" * (MAX_PAYLOAD_BYTES - 10)}
    over = {"s": "é" * (MAX_PAYLOAD_BYTES // 2)}  # two bytes each in UTF-8

    assert jsonsafe.size_problem(fits, path="input") is None
    problem = jsonsafe.size_problem(over, path="input")
    assert problem is not None and "over the 256 KiB limit" in problem.message


def _strings(value: Any) -> list[str]:
    """Every string and key in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_whatever_passes_encodes_as_utf8_and_round_trips(value: Any) -> None:
    """The promise the doors rely on: no problem found ⇒ every downstream can take it."""
    if jsonsafe.problems(value):
        return
    text = dump_json(value)
    encoded = text.encode("utf-8")  # Kafka/Avro strings: no lone surrogate
    assert not any("\x00" in s for s in _strings(json.loads(encoded)))  # PostgreSQL
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_loads_raises_only_decode_errors_or_unsafe_json(text: str) -> None:
    with contextlib.suppress(json.JSONDecodeError, jsonsafe.UnsafeJson):
        jsonsafe.loads(text)
