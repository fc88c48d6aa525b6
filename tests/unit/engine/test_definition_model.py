"""Definitions: loading, validation with every problem listed, canonical JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foldflow.definitions import Definition, DefinitionError, parse_duration

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))

GOOD = """
name: good
version: 2
timeout: 1h
steps:
  - id: a
    task: builtin.echo
    input: {x: "${input.x}"}
    retry: {max_attempts: 5, initial_backoff: 500ms, jitter: 0}
    compensate: {task: undo, input: {id: "${steps.a.output.id}"}}
  - {id: nap, sleep: 2, after: [a]}
  - {id: ok, signal: approve, timeout: 10m, after: [a]}
  - {id: sub, workflow: other, version: 3, after: [nap, ok], input: {v: "${signals.approve}"}}
output: {sub: "${steps.sub.output}"}
"""


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        Definition.load(text)
    return [(p.path, p.message) for p in info.value.problems]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    definition = Definition.load(path)
    assert Definition.from_json(definition.canonical_json()) == definition


def test_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"order-fulfilment", "fan-out-pipeline", "approval", "flaky-retry"} <= names


def test_kinds_durations_and_defaults() -> None:
    d = Definition.load(GOOD)
    assert [s.kind for s in d.steps] == ["task", "sleep", "signal", "child"]
    assert d.timeout == 3_600_000
    assert d.step("nap").sleep == 2000
    assert d.step("ok").timeout == 600_000
    assert d.step("a").retry.initial_backoff == 500
    assert d.step("a").attempt_timeout_ms == 30_000
    assert d.step("sub").version == 3
    assert d.key == "good:2"


def test_canonical_json_is_stable_and_round_trips() -> None:
    d = Definition.load(GOOD)
    text = d.canonical_json()
    assert Definition.from_json(text) == d
    assert Definition.from_json(text).canonical_json() == text
    assert json.loads(text)["steps"][1]["sleep"] == "2000ms"


def test_json_text_and_paths_load(tmp_path: Path) -> None:
    d = Definition.load(GOOD)
    file = tmp_path / "def.json"
    file.write_text(d.canonical_json())
    assert Definition.load(file) == d
    assert Definition.load(str(file)) == d


def test_three_mistakes_give_one_error_listing_all_three() -> None:
    text = """
name: broken
steps:
  - {id: a, task: t, after: [c]}
  - {id: b, task: t, input: {x: "${steps.nope.output}"}, colour: red}
  - {id: c, task: t, after: [a]}
"""
    problems = problems_of(text)
    assert ("steps[1].colour", "unknown field") in problems
    assert ("steps[1].input", "steps.nope.output: unknown step 'nope'") in problems
    assert any(path.endswith(".after") and "cycle" in msg for path, msg in problems)
    assert len(problems) == 3
    with pytest.raises(DefinitionError, match="3 problem"):
        Definition.load(text)


@pytest.mark.parametrize(
    ("snippet", "path", "fragment"),
    [
        ("- {id: a, task: t}\n  - {id: a, task: t}", "steps[1].id", "duplicate step id"),
        ("- {id: a, task: t, after: [zz]}", "steps[0].after[0]", "unknown step 'zz'"),
        ("- {id: a, task: t, after: [a]}", "steps[0].after[0]", "cannot follow itself"),
        ("- {id: a, task: t, when: 'input.x >'}", "steps[0].when", "unexpected end"),
        (
            "- {id: a, task: t}\n  - {id: b, task: t, input: {v: '${steps.a.output}'}}",
            "steps[1].input",
            "not an ancestor",
        ),
        (
            "- {id: a, task: t, input: {v: '${signals.go}'}}",
            "steps[0].input",
            "no signal step waits",
        ),
        ("- {id: a, task: t, input: {v: '${bogus.x}'}}", "steps[0].input", "bad reference"),
        ("- {id: a}", "steps[0]", "a task step needs 'task'"),
        ("- {id: a, task: t, sleep: 1}", "steps[0]", "cannot have 'task'"),
        ("- {id: a, task: t, timeout: soon}", "steps[0].timeout", "not a duration"),
        ("- {id: a, task: t, retry: {jitter: 2}}", "steps[0].retry.jitter", "less than or equal"),
        ("- {id: 'a b', task: t}", "steps[0].id", "should match pattern"),
        (
            "- {id: a, task: t, retry: {initial_backoff: 1m, max_backoff: 1s}}",
            "steps[0].retry",
            "max_backoff is shorter",
        ),
        (
            "- {id: a, task: t, compensate: {input: {}}}",
            "steps[0].compensate.task",
            "Field required",
        ),
    ],
)
def test_each_kind_of_problem_has_a_path(snippet: str, path: str, fragment: str) -> None:
    problems = problems_of(f"name: x\nsteps:\n  {snippet}\n")
    assert any(p == path and fragment in m for p, m in problems), problems


def test_a_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    problems = problems_of(str(tmp_path / "nope.yaml"))
    assert len(problems) == 1 and "No such file" in problems[0][1]


def test_top_level_problems() -> None:
    assert ("steps", "Field required") in problems_of("name: x")
    assert problems_of("- just a list")[0][1] == "a definition is a mapping"
    assert "not YAML" in problems_of("name: [unclosed")[0][1]
    schema_problems = problems_of("name: x\ninput_schema: {type: 3}\nsteps: [{id: a, task: t}]")
    assert schema_problems[0][0] == "input_schema.type"
    assert schema_problems[0][1].startswith("not a valid JSON Schema: 3 is not valid")


def test_output_may_reference_any_step() -> None:
    d = Definition.load(
        "name: x\nsteps: [{id: a, task: t}, {id: b, task: t}]\noutput: '${steps.a.output}'"
    )
    assert d.output == "${steps.a.output}"


@pytest.mark.parametrize(
    ("value", "ms"),
    [("500ms", 500), ("5s", 5000), ("2m", 120_000), ("1h", 3_600_000), (1.5, 1500), (0, 0)],
)
def test_durations(value: object, ms: int) -> None:
    assert parse_duration(value) == ms


@pytest.mark.parametrize("value", ["5 minutes", -1, True, None, "1.2.3s"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)
