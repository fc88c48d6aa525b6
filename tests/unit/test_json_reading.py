"""Reading JSON fields: orjson where it reads them as the standard library does."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foldflow.projections.rows import loads
from foldflow.schemas.messages import load_json

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80),
            max_value=2**80) | st.floats(allow_nan=False) | st.text())  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                       max_leaves=20)  # fmt: skip


@given(_values, st.booleans())
def test_it_reads_every_json_text_exactly_as_the_standard_library(value: object,
                                                                 ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert repr(load_json(text)) == repr(json.loads(text))  # repr: 1 and 1.0 differ


@pytest.mark.parametrize("text", [
    "12345678901234567890123",  # orjson: a float
    "[18446744073709551616, -9223372036854775809]",  # just beyond 64 bits
    '{"id": "1234567890123456789012", "n": 1}',  # long digits in a string
    "NaN", "[Infinity, -Infinity]", "1e400", '"\\ud800"', "-0", "-0.0", "5e-324",
    '{"a": 1, "a": 2}',
])
def test_what_orjson_reads_otherwise_or_refuses_reads_as_the_standard_library(
    text: str,
) -> None:
    assert repr(load_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["[1,]", "", "{'a': 1}", "[" * 100_000])
def test_text_that_is_not_json_raises_the_standard_librarys_error(text: str) -> None:
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(text)
    with pytest.raises(expected.type, match=f"^{re.escape(str(expected.value))}$"):
        load_json(text)


def test_a_projected_field_none_stays_none() -> None:
    assert loads(None) is None and loads('{"a": [1]}') == {"a": [1]}
