"""``input_schema``: linear-time patterns (no ReDoS), nothing fetched, every problem a path."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldflow import jsonsafe
from foldflow.input_schema import input_violation, schema_problems

pytestmark = pytest.mark.unit

EVIL = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(b+)+$": {"type": "integer"}}}  # fmt: skip


def _cpu(work: Any) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def test_a_catastrophic_pattern_matches_in_linear_time() -> None:
    """Python's re took 1.1 s for 24 a's and '!', doubling per character; here 2,000
    characters cost about what 250 do (CPU time ratio, no absolute bound)."""
    small = {"s": "a" * 250 + "!", "b" * 250 + "!": 1}
    large = {"s": "a" * 2000 + "!", "b" * 2000 + "!": 1}

    violation = input_violation(EVIL, {"s": "a" * 24 + "!"})
    assert violation == 'at s: "aaaaaaaaaaaaaaaaaaaaaaaa!" does not match "^(a+)+$"'
    assert (input_violation(EVIL, large) or "").startswith('at s: "aaaa')
    ratio = _cpu(lambda: input_violation(EVIL, large)) / _cpu(lambda: input_violation(EVIL, small))
    assert ratio < 24


@pytest.mark.parametrize(
    ("schema", "path", "says"),
    [
        ({"properties": {"s": {"pattern": "(a)\\1"}}}, "input_schema.properties.s.pattern",
         "linear-time"),
        ({"properties": {"s": {"pattern": "(?=a)b"}}}, "input_schema.properties.s.pattern",
         "linear-time"),
        ({"patternProperties": {"(?<=x)y": {}}}, "input_schema.patternProperties", "regex"),
        ({"$ref": "http://169.254.169.254/latest"}, "input_schema", "Retrieval is disabled"),
        ({"$schema": "http://json-schema.org/draft-03/schema#"}, 'input_schema["$schema"]',
         "unknown meta-schema"),
        ({"$schema": []}, 'input_schema["$schema"]', "unknown meta-schema"),  # found by fuzzing
        ({"type": 3}, "input_schema.type", "not a valid JSON Schema"),
    ],
)
def test_unusable_schemas_are_refused_with_their_path(
    schema: dict[str, Any], path: str, says: str
) -> None:
    [problem] = schema_problems(schema)

    assert problem.path.startswith(path) and says in problem.message, problem


def test_every_supported_draft_is_known() -> None:
    for meta in ("http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#",
                 "https://json-schema.org/draft/2019-09/schema",
                 "https://json-schema.org/draft/2020-12/schema"):  # fmt: skip
        assert schema_problems({"$schema": meta, "type": "object"}) == []


def test_a_violation_names_the_first_path_and_quotes_briefly() -> None:
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}

    assert input_violation(schema, {"n": "three"}) == 'at n: "three" is not of type "integer"'
    assert input_violation(schema, {}) == 'at <root>: "n" is a required property'
    long = input_violation({"type": "integer"}, "x" * 10_000)
    assert long is not None and len(long) < 600


_keyword = st.sampled_from(
    ["type", "pattern", "patternProperties", "properties", "items", "minLength", "maximum",
     "multipleOf", "enum", "const", "required", "additionalProperties", "$ref", "$defs",
     "allOf", "anyOf", "not", "if", "then", "format", "uniqueItems", "contains",
     "propertyNames", "unevaluatedProperties", "$id", "$schema", "prefixItems"]
)  # fmt: skip
_scalar = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["string", "object", "#", "#/$defs/a", "a+", "(a)\\1", "^x$", "regex"])
)  # fmt: skip
_schema = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_keyword | st.text(max_size=4), inner, max_size=4),
    max_leaves=15,
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(_keyword, _schema, max_size=4), _value)
def test_any_schema_is_refused_or_usable_and_never_crashes(schema: Any, value: Any) -> None:
    if jsonsafe.problems(schema) or schema_problems(schema):
        return
    result = input_violation(schema, value)
    assert result is None or result.startswith("at ")
