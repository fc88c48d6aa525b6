"""Definitions: every size, depth, count and number has a bound, refused with its path.

Each case here used to be accepted (and then wedged the orchestrator) or to crash
validation (a 500 at the gateway, a traceback in the CLI). Fuzzing ends the file: no
input makes ``Definition.from_data`` or the expression parser raise anything but their
own error.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldflow.definitions import Definition, DefinitionError, parse_duration
from foldflow.expressions import (
    ExpressionError,
    evaluate_condition,
    parse_condition,
    parse_template,
)
from foldflow.limits import (
    MAX_AFTER_EDGES,
    MAX_DEFINITION_BYTES,
    MAX_DURATION_MS,
    MAX_EXPRESSION_DEPTH,
    MAX_PROBLEMS,
    MAX_STEPS,
    MAX_VERSION,
)

pytestmark = pytest.mark.unit


def _problems(data: Any) -> dict[str, str]:
    with pytest.raises(DefinitionError) as info:
        Definition.from_data(data)
    found: dict[str, str] = {}
    for p in info.value.problems:
        found[p.path] = (found[p.path] + "\n" if p.path in found else "") + p.message
    return found


def _with_step(**step: Any) -> dict[str, Any]:
    return {"name": "d", "steps": [{"id": "a", "task": "t", **step}]}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (math.inf, "365d"),
        (-math.inf, "negative"),
        (math.nan, "NaN"),
        (1e300, "365d"),
        (10**40, "365d"),
        ("99999999999999d", "365d"),
        ("9" * 400 + "d", "not a duration"),
        ("366d", "365d"),
        ("-1s", "negative"),
    ],
)
def test_durations_past_a_year_or_not_finite_are_refused(value: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(value)


def test_the_longest_duration_is_a_year_and_its_timer_fits_an_avro_long() -> None:
    assert parse_duration("365d") == MAX_DURATION_MS
    assert 2_000_000_000_000_000 + MAX_DURATION_MS < 2**63 - 1  # ms since 1970 in year 65000


@pytest.mark.parametrize("field", ["sleep", "timeout"])
def test_sleep_and_timeout_bounds_are_reported_with_their_path(field: str) -> None:
    step = {"id": "z", "sleep": "99999999999999d"} if field == "sleep" else {
        "id": "z", "task": "t", "timeout": "400d"}  # fmt: skip

    found = _problems({"name": "d", "steps": [step]})

    assert "365d" in found[f"steps[0].{field}"]


@pytest.mark.parametrize("version", [0, MAX_VERSION + 1, 2**40])
def test_versions_fit_an_avro_int(version: int) -> None:
    top = {"name": "d", "version": version, "steps": [{"id": "a", "task": "t"}]}
    assert "version" in _problems(top)
    child = {"name": "d", "steps": [{"id": "c", "workflow": "kid", "version": version}]}
    assert "steps[0].version" in _problems(child)


def test_the_largest_version_is_accepted() -> None:
    data = {"name": "d", "version": MAX_VERSION,
            "steps": [{"id": "c", "workflow": "kid", "version": MAX_VERSION}]}  # fmt: skip
    assert Definition.from_data(data).version == MAX_VERSION


def test_steps_per_definition_are_bounded() -> None:
    steps = [{"id": f"s{i}", "task": "t"} for i in range(MAX_STEPS + 1)]

    assert f"at most {MAX_STEPS}" in _problems({"name": "d", "steps": steps})["steps"]
    assert len(Definition.from_data({"name": "d", "steps": steps[:MAX_STEPS]}).steps) == MAX_STEPS


def test_after_edges_are_bounded() -> None:
    per_step = MAX_AFTER_EDGES // 50 + 1
    steps = [{"id": f"s{i}", "task": "t", "after": ["s0"] * per_step} for i in range(1, 51)]

    found = _problems({"name": "d", "steps": [{"id": "s0", "task": "t"}, *steps]})

    assert f"over the limit of {MAX_AFTER_EDGES}" in found["steps"]


def test_the_canonical_size_is_bounded() -> None:
    text = "x" * 16_000
    steps = [{"id": f"s{i}", "task": "t", "input": {"t": text}} for i in range(20)]

    found = _problems({"name": "d", "steps": steps})

    assert "canonical JSON" in found[""] and f"{MAX_DEFINITION_BYTES // 1024} KiB" in found[""]


@pytest.mark.parametrize(
    ("data", "path", "says"),
    [
        ({"name": "d", "description": "x" * 5000, "steps": [{"id": "a", "task": "t"}]},
         "description", "4096"),
        ({"name": "d", "description": "\ud800", "steps": [{"id": "a", "task": "t"}]},
         "description", "surrogate"),
        (_with_step(input={"x": "a\x00"}), "steps[0].input.x", "NUL"),
        (_with_step(input={"x": float("nan")}), "steps[0].input.x", "finite"),
        (_with_step(input={"x": "y" * 20_000}), "steps[0].input.x", "16384"),
        (_with_step(when="input.a and " * 200 + "true"), "steps[0].when", "2048"),
        ({"name": "d", "steps": [{"id": "c", "workflow": "bad name!"}]}, "steps[0].workflow",
         "pattern"),
        ({"name": "d", "steps": [{"id": "a", "signal": "s" * 300}]}, "steps[0].signal", "200"),
    ],
)
def test_strings_and_values_are_bounded(data: dict[str, Any], path: str, says: str) -> None:
    found = _problems(data)

    assert says in found[path], found


def test_deep_nesting_in_a_step_input_is_refused() -> None:
    deep: Any = "x"
    for _ in range(70):
        deep = {"k": deep}

    found = _problems(_with_step(input=deep))

    [(path, message)] = found.items()
    assert path.startswith("steps[0].input.k.k") and "deeper than 64" in message


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ('"\\x" == input.a', "bad string literal"),
        ("'a\nb' == input.a", "bad string literal"),
        ("(" * 300 + "true" + ")" * 300, f"deeper than {MAX_EXPRESSION_DEPTH}"),
        ("not " * 1200 + "true", f"deeper than {MAX_EXPRESSION_DEPTH}"),
        ("input.a == " + "9" * 5000, "at most 100 characters"),
        ("input.a < 1e999", "out of range"),
        ("input.a == '\\u12'", "bad string literal"),  # found by the fuzzer below
    ],
)
def test_conditions_that_crashed_the_parser_are_expression_errors(when: str, says: str) -> None:
    with pytest.raises(ExpressionError, match=says):
        parse_condition(when)


def test_numbers_with_leading_zeros_parse_as_numbers() -> None:  # found by the fuzzer below
    assert evaluate_condition(parse_condition("input.a == 007"), {"input": {"a": 7}})


def test_nesting_up_to_the_bound_parses_and_long_and_chains_stay_flat() -> None:
    depth = MAX_EXPRESSION_DEPTH
    assert parse_condition("(" * depth + "true" + ")" * depth) is not None
    assert parse_condition("not " * depth + "true") is not None
    chain = parse_condition(" and ".join(["input.a"] * 5000))  # no recursion per operand
    assert len(chain.operands) == 5000  # type: ignore[union-attr]


def test_a_reverse_chain_of_the_most_steps_validates_without_recursion() -> None:
    steps: list[dict[str, Any]] = [{"id": f"s{i}", "task": "t"} for i in range(MAX_STEPS)]
    for i, step in enumerate(steps[:-1]):
        step["after"] = [f"s{i + 1}"]
        step["input"] = {"v": f"${{steps.s{MAX_STEPS - 1}.output}}"}  # the farthest ancestor

    assert len(Definition.from_data({"name": "d", "steps": steps}).steps) == MAX_STEPS


def test_a_long_cycle_is_reported_once_and_shortened() -> None:
    steps = [{"id": f"s{i}", "task": "t", "after": [f"s{(i + 1) % 400}"]} for i in range(400)]

    found = _problems({"name": "d", "steps": steps})

    [cycle] = [m for p, m in found.items() if "cycle" in m]
    assert cycle.startswith("cycle: ") and "…" in cycle and len(cycle) < 400


def test_problems_reported_are_capped() -> None:
    steps = [{"id": f"s{i}", "task": "t", "after": ["nope"]} for i in range(300)]

    with pytest.raises(DefinitionError) as info:
        Definition.from_data({"name": "d", "steps": steps})

    assert len(info.value.problems) == MAX_PROBLEMS + 1
    assert info.value.problems[-1].message == "... and 200 more"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name: d\nsteps: [{id: a, task: t, input: {n: " + "9" * 5000 + "}}]", "not loadable"),
        ("name: d\nsteps: [{id: a, task: t, input: {n: .nan}}]", "finite"),
        ("name: d\nsteps: [{id: a, task: t, input: {n: 2024-01-01}}]", "not a JSON value"),
        ("name: d\nsteps: [{id: z, sleep: 1.0e+999}]", "finite"),
    ],
)
def test_yaml_values_json_cannot_hold_are_refused(text: str, says: str) -> None:
    with pytest.raises(DefinitionError) as info:
        Definition.load(text)

    assert any(says in p.message for p in info.value.problems), info.value.problems


def test_a_yaml_alias_bomb_is_refused_without_walking_it_all() -> None:
    lines = ["name: d", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("steps: [{id: a, task: t, input: {bomb: *a8}}]")

    with pytest.raises(DefinitionError) as info:
        Definition.load("\n".join(lines))

    assert "holds more than" in info.value.problems[0].message


# --- fuzzing: nothing but our own errors ----------------------------------------------------

_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_step = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"]) | st.text(max_size=5)},
    optional={
        "task": st.sampled_from(["t", "x.y"]) | st.text(max_size=5),
        "sleep": _scalar,
        "signal": st.sampled_from(["go"]) | _scalar,
        "workflow": _scalar,
        "version": st.integers() | _scalar,
        "after": st.lists(st.sampled_from(["a", "b", "c"]) | _scalar, max_size=3),
        "when": st.text(max_size=60) | _scalar,
        "input": _json,
        "timeout": _scalar,
        "retry": st.dictionaries(
            st.sampled_from(
                ["max_attempts", "initial_backoff", "max_backoff", "multiplier", "jitter"]
            ),
            _scalar,
        ),
        "compensate": _json,
    },
)
_definition = st.fixed_dictionaries(
    {"name": st.sampled_from(["d"]) | st.text(max_size=5), "steps": st.lists(_step, max_size=4)},
    optional={
        "version": st.integers() | _scalar,
        "description": _scalar,
        "timeout": _scalar,
        "output": _json,
        "input_schema": _json,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_definition)
def test_any_definition_data_is_accepted_or_refused_never_crashes(data: dict[str, Any]) -> None:
    try:
        definition = Definition.from_data(data)
    except DefinitionError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
    else:  # what is accepted round-trips through its canonical form
        assert Definition.from_json(definition.canonical_json()) == definition


_pieces = [*"()'\"\\ =<>!$.{}_019eE+-x\n", "not ", " and ", " or ", "input.a", "steps.a.output",
           "${", "}", "\\u0000", "\\x", "true", "null"]  # fmt: skip
_expression_text = st.lists(st.sampled_from(_pieces), max_size=40).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_expression_text | st.text(max_size=80))
def test_the_condition_parser_raises_only_expression_errors(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        parse_condition(text)


@settings(max_examples=500, deadline=None)
@given(_expression_text | st.text(max_size=80))
def test_the_template_parser_raises_only_expression_errors(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        parse_template(text)
