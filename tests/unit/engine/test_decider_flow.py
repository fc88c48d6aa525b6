"""Decider: start, DAG scheduling, conditions, output, idempotency, envelopes, react."""

from __future__ import annotations

import json

import pytest
from engine_harness import T0, Run, types

from foldflow.processors.decider import decide, initial_state, is_terminal, react
from foldflow.processors.decider.state import state_from_bytes, state_to_bytes
from foldflow.schemas.messages import (
    ExecuteTask,
    StartWorkflow,
    StepScheduled,
    StepSkipped,
    TaskSucceeded,
    WorkflowFailed,
    WorkflowStarted,
    event_id_for,
    workflow_key,
)

DIAMOND = """
name: diamond
steps:
  - {id: a, task: t.a, input: {x: "${input.x}"}}
  - {id: b, task: t.b, after: [a], input: {y: "${steps.a.output.v}"}}
  - {id: c, task: t.c, after: [a]}
  - {id: d, task: t.d, after: [b, c], input: {both: "${steps.b.output} and ${steps.c.output}"}}
output: {d: "${steps.d.output}", x: "${input.x}"}
"""


def scheduled(payloads: list[object]) -> list[str]:
    return [p.step_id for p in payloads if isinstance(p, StepScheduled)]


def test_start_schedules_the_roots_with_rendered_input() -> None:
    run = Run(DIAMOND)
    out = run.start({"x": 7})
    assert types(out) == ["WorkflowStarted", "StepScheduled"]
    started, step = out
    assert isinstance(started, WorkflowStarted) and started.definition_name == "diamond"
    assert started.definition_json == run.definition.canonical_json()
    assert isinstance(step, StepScheduled)
    assert (step.step_id, step.attempt, step.task_id, step.task_type) == (
        "a",
        1,
        "wf-1:a:run:1",
        "t.a",
    )
    assert json.loads(step.input_json) == {"x": 7}
    assert step.timeout_ms == 30_000
    assert run.state.status == "running"
    assert run.state.timers == {"timeout:a:1": T0 + 30_000}


def test_fan_out_then_fan_in_then_completed_with_output() -> None:
    run = Run(DIAMOND)
    run.start({"x": 7})
    assert scheduled(run.succeed("a", {"v": 1})) == ["b", "c"]
    assert json.loads(run.history[-2].payload.input_json) == {"y": 1}
    assert run.succeed("c", "C") == [run.history[-1].payload]  # d waits for b
    assert scheduled(run.succeed("b", "B")) == ["d"]
    assert json.loads(run.history[-1].payload.input_json) == {"both": "B and C"}
    out = run.succeed("d", {"done": True})
    assert types(out) == ["StepCompleted", "WorkflowCompleted"]
    assert run.output == {"d": {"done": True}, "x": 7}
    assert run.state.status == "completed" and is_terminal(run.state)
    assert run.state.timers == {}


def test_default_output_is_every_step_output() -> None:
    run = Run("name: one\nsteps: [{id: a, task: t}, {id: b, task: t, when: false}]")
    run.start()
    run.succeed("a", [1])
    assert run.output == {"a": [1]}


def test_false_condition_skips_and_dependants_still_run() -> None:
    run = Run(
        """
name: cond
steps:
  - {id: a, task: t}
  - {id: big, task: t, after: [a], when: "steps.a.output.n > 10"}
  - {id: small, task: t, after: [a], when: "not (steps.a.output.n > 10)"}
  - {id: end, task: t, after: [big, small]}
"""
    )
    run.start()
    out = run.succeed("a", {"n": 3})
    assert types(out) == [
        "StepCompleted",
        "StepSkipped",
        "StepScheduled",
    ]
    assert isinstance(out[1], StepSkipped) and out[1].step_id == "big"
    assert "steps.a.output.n > 10" in out[1].reason
    assert scheduled(run.succeed("small")) == ["end"]


def test_all_steps_skipped_completes_at_start() -> None:
    run = Run("name: skip\nsteps: [{id: a, task: t, when: 'input.go'}]")
    assert types(run.start({"go": False})) == [
        "WorkflowStarted",
        "StepSkipped",
        "WorkflowCompleted",
    ]


def test_unknown_definition_fails_at_sequence_one() -> None:
    run = Run(None)
    out = run.send(StartWorkflow("missing", 4, "{}"))
    assert out == [WorkflowFailed(error="unknown definition missing v4")]
    assert run.history[0].sequence == 1 and run.state.status == "failed"
    assert (
        Run(None).send(StartWorkflow("missing", None, "{}"))[0].error
        == "unknown definition missing vlatest"
    )


def test_input_violating_the_schema_fails_the_workflow() -> None:
    run = Run(
        "name: s\ninput_schema: {type: object, required: [n], properties: {n: {type: integer}}}\n"
        "steps: [{id: a, task: t}]"
    )
    out = run.start({"n": "three"})
    assert types(out) == ["WorkflowStarted", "WorkflowFailed"]
    assert (
        out[1].error == 'input does not match input_schema at n: "three" is not of type "integer"'
    )
    assert run.state.status == "failed"


def test_second_start_of_the_same_id_is_a_no_op() -> None:
    run = Run(DIAMOND)
    run.start({"x": 1})
    assert run.start({"x": 2}) == []


def test_a_message_seen_before_produces_nothing() -> None:
    run = Run(DIAMOND)
    run.start({"x": 1})
    ss = run.state.steps["a"]
    result = TaskSucceeded(ss.task_id or "", "a", 1, "step", "{}")
    assert run.send(result, event_id="result-1")
    again = run.state
    assert run.send(result, event_id="result-1") == []
    assert run.state == again


def test_stale_results_produce_nothing() -> None:
    run = Run(DIAMOND)
    run.start({"x": 1})
    assert run.send(TaskSucceeded("wf-1:a:run:0", "a", 0, "step", "{}")) == []  # old attempt
    assert run.send(TaskSucceeded("wf-1:b:run:1", "b", 1, "step", "{}")) == []  # not scheduled
    assert run.send(TaskSucceeded("wf-1:zz:run:1", "zz", 1, "step", "{}")) == []  # no such step
    run.succeed("a")
    assert run.send(TaskSucceeded("wf-1:a:run:1", "a", 1, "step", "{}")) == []  # already done


def test_messages_to_a_finished_or_unknown_workflow_produce_nothing() -> None:
    run = Run("name: one\nsteps: [{id: a, task: t}]")
    assert run.send(TaskSucceeded("wf-1:a:run:1", "a", 1, "step", "{}")) == []  # not started
    run.start()
    run.succeed("a")
    assert run.state.status == "completed"
    assert run.send(TaskSucceeded("wf-1:a:run:1", "a", 1, "step", "{}")) == []


def test_envelopes_are_deterministic_and_linked_to_their_cause() -> None:
    run = Run(DIAMOND)
    run.start({"x": 1})
    msg = run.message(TaskSucceeded("wf-1:a:run:1", "a", 1, "step", "{}"))
    events = decide(run.state, msg, 42)
    assert events == decide(run.state, msg, 42)
    for offset, event in enumerate(events, start=3):
        assert event.sequence == offset
        assert event.event_id == event_id_for("wf-1", offset)
        assert event.causation_id == msg.event_id
        assert event.correlation_id == "corr-1"
        assert (event.timestamp, event.source, event.workflow_id) == (42, "orchestrator", "wf-1")


def test_react_turns_scheduled_steps_into_task_commands() -> None:
    run = Run(DIAMOND)
    run.start({"x": 1})
    run.succeed("a", {"v": 2})
    commands = run.commands()
    tasks = [c.payload for c in commands]
    assert all(isinstance(t, ExecuteTask) for t in tasks)
    assert [(t.step_id, t.task_type, t.kind) for t in tasks] == [
        ("a", "t.a", "step"),
        ("b", "t.b", "step"),
        ("c", "t.c", "step"),
    ]
    scheduled_event = run.history[1]
    command = react(run.state, scheduled_event)[0]
    assert command.causation_id == scheduled_event.event_id
    assert command.sequence is None and command.workflow_id == "wf-1"
    assert react(run.state, run.history[0]) == []


def test_state_round_trips_through_bytes() -> None:
    run = Run(DIAMOND)
    assert state_from_bytes(state_to_bytes(initial_state("x"))) == initial_state("x")
    run.start({"x": 1})
    run.succeed("a", {"v": [1, {"k": None}]})
    data = state_to_bytes(run.state)
    assert state_from_bytes(data) == run.state
    assert state_to_bytes(state_from_bytes(data)) == data
    assert data.count(run.state.definition_json.encode()) == 1  # stored once, not re-escaped
    with pytest.raises(ValueError, match="not a workflow state"):
        state_from_bytes(b'{"workflow_id": "x"}')


def test_events_and_commands_carry_the_workflows_tenant() -> None:
    run = Run(DIAMOND, workflow_key("acme", "wf-1"), tenant="acme")
    run.start({"x": 1}, tenant="acme")
    run.succeed("a")  # the result itself carries no tenant (e.g. a v1 message)
    assert {e.tenant for e in run.history} == {"acme"}
    assert {c.tenant for c in run.commands()} == {"acme"}
    unknown = Run(None, workflow_key("acme", "wf-2"), tenant="acme")
    unknown.send(StartWorkflow("nope", 1, "{}", tenant="acme"))
    assert unknown.history[0].tenant == "acme"
