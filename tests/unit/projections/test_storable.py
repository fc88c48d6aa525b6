"""Values PostgreSQL cannot store, repaired before the fold (pure: no database here)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from projection_support import SCENARIOS, Script

from foldflow.projections.apply import fold_batch, payload_document
from foldflow.projections.storable import (
    MAX_JSON_DEPTH,
    NAME_WIDTH,
    escape,
    fit,
    minimal,
    needs_repair,
    repair,
)
from foldflow.schemas import messages as m


def completed_with(output_json: str, **envelope: Any) -> m.Envelope:
    script = Script("wf-1").start()
    env = script.add(m.StepCompleted("a", 1, output_json, "wf-1:a:run:1"))
    return dataclasses.replace(env, **envelope)


def storable(value: Any, depth: int = 1) -> bool:
    """What PostgreSQL's JSONB and the read API take: finite numbers, no NUL, no lone
    surrogate, nesting within the bound."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and value.encode("utf-8", "replace").decode() == value
    if isinstance(value, list):
        return depth <= MAX_JSON_DEPTH and all(storable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return depth <= MAX_JSON_DEPTH and all(
            storable(k) and storable(v, depth + 1) for k, v in value.items()
        )
    return True


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_clean_events_are_left_alone() -> None:
    for make in SCENARIOS.values():
        for env in make("wf-clean", "acme").events:
            assert repair(env) == (env, None)


def test_nan_infinity_and_out_of_range_numbers_become_null() -> None:
    text = '{"a": NaN, "b": [-Infinity, Infinity], "c": 1e999, "d": 1.5, "e": ' + \
        "9" * 5000 + "}"
    env = completed_with(text)
    assert needs_repair(env)
    fixed, altered = repair(env)
    assert altered is not None
    assert json.loads(fixed.payload.output_json) == {  # type: ignore[union-attr]
        "a": None, "b": [None, None], "c": None, "d": 1.5, "e": None}
    assert [(p.field, p.path) for p in altered.problems] == [
        ("payload.output_json", "$.a"), ("payload.output_json", "$.b[0]"),
        ("payload.output_json", "$.b[1]"), ("payload.output_json", "$.c"),
        ("payload.output_json", "$.e"),
    ]
    assert "NaN is not a JSON number; stored as null" in altered.reason
    assert "an integer of 5000 digits" in altered.reason
    assert altered.document()["original"]["payload.output_json"] == text


def test_nul_and_lone_surrogates_become_the_replacement_character() -> None:
    env = completed_with('{"k\\u0000": "a\\u0000b", "s": "\\ud800", "pair": "\\ud83d\\ude00"}')
    fixed, altered = repair(env)
    assert altered is not None
    assert json.loads(fixed.payload.output_json) == {  # type: ignore[union-attr]
        "k\ufffd": "a\ufffdb", "s": "\ufffd", "pair": "\U0001F600"}
    assert [p.path for p in altered.problems] == ["$.k\\u0000", "$.k\ufffd", "$.s"]
    for p in altered.problems:  # every stored string is storable itself
        assert storable(p.path) and storable(p.message)


def test_too_deep_subtrees_and_text_that_is_not_json_become_null() -> None:
    fixed, altered = repair(completed_with(nested(MAX_JSON_DEPTH + 50)))
    assert altered is not None
    value = json.loads(fixed.payload.output_json)  # type: ignore[union-attr]
    assert storable(value)
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value is None and depth == MAX_JSON_DEPTH
    assert repair(completed_with(nested(MAX_JSON_DEPTH)))[1] is None
    fixed, altered = repair(completed_with(nested(5000)))
    assert fixed.payload.output_json == "null" and altered is not None  # type: ignore[union-attr]
    assert "too deeply nested to parse" in altered.reason
    fixed, altered = repair(completed_with("not json"))
    assert fixed.payload.output_json == "null" and altered is not None  # type: ignore[union-attr]
    assert altered.reason.startswith("payload.output_json: not JSON")


def test_free_text_ids_and_time_are_repaired() -> None:
    script = Script("wf-1").start()
    long_step = "s" * 300
    env = script.add(m.StepAttemptFailed(long_step, 1, "t", "boom\x00 \ud800", True))
    env = dataclasses.replace(env, timestamp=2**62, correlation_id="c" * 500)
    assert needs_repair(env)
    fixed, altered = repair(env)
    assert altered is not None
    p = fixed.payload
    assert isinstance(p, m.StepAttemptFailed)
    assert p.error == "boom\ufffd \ufffd"
    assert len(p.step_id) == NAME_WIDTH and p.step_id == fit(long_step, NAME_WIDTH)
    assert fit("s" * 299 + "t", NAME_WIDTH) != p.step_id  # a hash keeps them apart
    assert len(fixed.correlation_id) == NAME_WIDTH
    assert fixed.timestamp < 2**62
    assert altered.document()["original"]["payload.error"] == "boom\\u0000 \\ud800"
    fold_batch({}, {}, [*script.events[:-1], fixed])  # the fold takes the repaired event


def test_minimal_keeps_what_the_fold_needs_and_blanks_the_rest() -> None:
    script = Script("wf-1").start()
    env = script.add(m.StepCompleted("a", 1, '{"x": 1}', "wf-1:a:run:1"))
    reduced, altered = minimal(env, "UniqueViolation: event_id taken", substitute_id="sub-1")
    assert reduced.event_id == "sub-1" and reduced.sequence == env.sequence
    assert reduced.payload == m.StepCompleted("a", 1, "null", "wf-1:a:run:1")
    assert altered.document()["original"] == {
        "payload.output_json": '{"x": 1}', "event_id": env.event_id}
    assert "PostgreSQL refused it (UniqueViolation: event_id taken)" in altered.reason
    fold = fold_batch({}, {}, [script.events[0], reduced])
    assert fold.steps[("wf-1", "a")].status == "succeeded"
    started = minimal(script.events[0], "x", substitute_id="sub-0")[0].payload
    assert isinstance(started, m.WorkflowStarted)
    assert (started.definition_name, started.tenant, started.input_json) == (
        "order", "default", "null")


def test_escape_makes_any_text_storable() -> None:
    assert escape("a\x00b\udfffc ü") == "a\\u0000b\\udfffc ü"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300)
@given(value=json_values, depth=st.integers(0, 200))
def test_whatever_a_worker_outputs_is_storable_after_repair(value: Any, depth: int) -> None:
    for _ in range(depth):
        value = [value]
    env = completed_with(m.dump_json(value))
    fixed, altered = repair(env)
    out = json.loads(fixed.payload.output_json)  # type: ignore[union-attr]
    assert storable(out)
    assert (altered is None) == storable(value)
    if altered is not None:
        assert needs_repair(env)  # the cheap check never misses what repair changes
    assert all(storable(v) for v in payload_document(fixed.payload).values())


def test_a_start_refused_for_an_oversized_definition_name_still_fits_its_row() -> None:
    script = Script("wf-1")
    script.add(m.WorkflowFailed("unknown definition " + "n" * 300 + " v99999999999"))
    row = fold_batch({}, {}, script.events).instances["wf-1"]
    assert len(row.definition_name) == NAME_WIDTH
    assert (row.status, row.definition_version) == ("failed", 0)
