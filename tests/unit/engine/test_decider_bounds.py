"""Decider: a value that could not travel in a message fails that one workflow, clearly.

The gateway bounds what comes in, but templates can multiply it: a 200 KB input used
four times renders an 800 KB task input, and a ``task.execute.v1`` over Kafka's message
limit used to wedge the orchestrator's loop. Given events, when a message, then events:
the workflow fails with the size and the bound in its error, and nothing oversized is
ever emitted.
"""

from __future__ import annotations

import pytest
from engine_harness import Run, types

from foldflow.definitions import Definition
from foldflow.limits import MAX_PAYLOAD_BYTES
from foldflow.schemas.messages import (
    ChildWorkflowRequested,
    SignalWorkflow,
    StartWorkflow,
    StepFailed,
    StepScheduled,
    TaskSucceeded,
    WorkflowCompleted,
    WorkflowFailed,
    dump_json,
)

pytestmark = pytest.mark.unit

QUARTER = "x" * (MAX_PAYLOAD_BYTES // 4)  # fits alone; four of them do not

FOUR_TIMES = """
name: fan
steps:
  - id: small
    task: t
    input: {v: "${input.blob}"}
  - id: big
    task: t
    after: [small]
    input: {a: "${input.blob}", b: "${input.blob}", c: "${input.blob}", d: "${input.blob}"}
  - {id: never, task: t, after: [big]}
"""


def _largest_message(run: Run) -> int:
    return max(len(dump_json(e.payload.__dict__)) for e in run.history + run.outbox)


def test_a_rendered_task_input_over_the_bound_fails_the_workflow_with_its_size() -> None:
    run = Run(FOUR_TIMES)
    run.start({"blob": QUARTER})

    out = run.succeed("small", {"ok": True})

    assert types(out) == ["StepCompleted", "StepFailed", "WorkflowFailed"]
    failed = out[1]
    assert isinstance(failed, StepFailed) and failed.step_id == "big"
    assert "the rendered input is" in failed.error and "over the 256 KiB limit" in failed.error
    assert isinstance(out[2], WorkflowFailed) and out[2].failed_step_id == "big"
    assert not any(isinstance(e.payload, StepScheduled) and e.payload.step_id == "big"
                   for e in run.history)  # fmt: skip
    assert _largest_message(run) < MAX_PAYLOAD_BYTES + 10_000


def test_the_same_template_under_the_bound_is_scheduled() -> None:
    run = Run(FOUR_TIMES)
    run.start({"blob": "x" * 1000})

    out = run.succeed("small", {"ok": True})

    assert types(out) == ["StepCompleted", "StepScheduled"]


def test_a_first_step_too_big_fails_the_workflow_at_start() -> None:
    run = Run(
        """
name: first
steps:
  - {id: a, task: t, input: {a: "${input.b}", b: "${input.b}", c: "${input.b}", d: "${input.b}"}}
"""
    )

    out = run.start({"b": QUARTER})

    assert types(out) == ["WorkflowStarted", "StepFailed", "WorkflowFailed"]
    assert run.state.status == "failed"


def test_an_oversized_step_after_a_completed_compensable_step_compensates_it() -> None:
    run = Run(
        """
name: saga
steps:
  - {id: reserve, task: t, compensate: {task: release}}
  - id: big
    task: t
    after: [reserve]
    input: {a: "${input.b}", b: "${input.b}", c: "${input.b}", d: "${input.b}"}
"""
    )
    run.start({"b": QUARTER})

    out = run.succeed("reserve", {"id": 1})

    assert types(out) == [
        "StepCompleted", "StepFailed", "WorkflowCompensating", "CompensationScheduled",
    ]  # fmt: skip
    assert types(run.succeed("reserve", compensation=True)) == [
        "CompensationCompleted", "WorkflowCompensated",
    ]  # fmt: skip


def test_a_child_input_over_the_bound_fails_the_step_without_starting_the_child() -> None:
    run = Run(
        """
name: parent
steps:
  - id: kid
    workflow: child
    input: {a: "${input.b}", b: "${input.b}", c: "${input.b}", d: "${input.b}"}
"""
    )

    out = run.start({"b": QUARTER})

    assert types(out) == ["WorkflowStarted", "StepFailed", "WorkflowFailed"]
    assert "the child workflow's input is" in out[1].error
    assert not any(isinstance(e.payload, ChildWorkflowRequested) for e in run.history)
    assert not any(isinstance(m.payload, StartWorkflow) for m in run.outbox)


def test_a_workflow_output_over_the_bound_fails_instead_of_completing() -> None:
    run = Run(
        """
name: out
steps: [{id: a, task: t}, {id: b, task: t}, {id: c, task: t}, {id: d, task: t}, {id: e, task: t}]
"""
    )
    run.start()
    for step in "abcd":
        run.succeed(step, QUARTER[:-100])  # each output fits; all five together do not

    out = run.succeed("e", QUARTER[:-100])

    assert types(out) == ["StepCompleted", "WorkflowFailed"]
    assert "the workflow output is" in out[1].error
    assert not any(isinstance(e.payload, WorkflowCompleted) for e in run.history)


def test_a_start_input_over_the_bound_fails_without_a_started_event() -> None:
    run = Run("name: s\nsteps: [{id: a, task: t}]")

    out = run.start({"blob": "x" * MAX_PAYLOAD_BYTES})

    assert types(out) == ["WorkflowFailed"]
    assert "the workflow input is" in out[0].error


def test_a_signal_over_the_bound_fails_the_workflow() -> None:
    run = Run("name: s\nsteps: [{id: wait, signal: go}]")
    run.start()

    out = run.send(SignalWorkflow(name="go", data_json=dump_json("x" * MAX_PAYLOAD_BYTES)))

    assert types(out) == ["WorkflowFailed"]
    assert "signal 'go': its data is" in out[0].error


def test_a_task_output_over_the_bound_fails_the_attempt_for_good() -> None:
    run = Run("name: s\nsteps: [{id: a, task: t}]")
    run.start()

    out = run.succeed("a", "x" * MAX_PAYLOAD_BYTES)

    assert types(out) == ["StepAttemptFailed", "StepFailed", "WorkflowFailed"]
    assert out[0].retryable is False and "the task's output is" in out[0].error


def test_a_compensation_input_over_the_bound_fails_the_compensation() -> None:
    run = Run(
        """
name: saga
steps:
  - id: reserve
    task: t
    compensate:
      task: release
      input: {a: "${input.b}", b: "${input.b}", c: "${input.b}", d: "${input.b}"}
  - {id: pay, task: t, after: [reserve], retry: {max_attempts: 1}}
"""
    )
    run.start({"b": QUARTER})
    run.succeed("reserve", {"id": 1})

    out = run.fail("pay", retryable=False)

    assert types(out)[-2:] == ["CompensationFailed", "WorkflowCompensationFailed"]
    assert "the rendered compensation input is" in out[-1].error


def test_retry_backoff_never_overflows_even_past_float_range() -> None:
    definition = Definition.load(
        "name: r\nsteps: [{id: a, task: t, retry: {max_attempts: 1000, multiplier: 100,"
        " initial_backoff: 1s, max_backoff: 1d}}]"
    )
    policy = definition.steps[0].retry

    assert policy.backoff_ms(999, 0.5) == 86_400_000  # 100.0 ** 998 raised OverflowError


@pytest.mark.parametrize(
    ("output_json", "says"),
    [
        ('{"price": NaN}', "at price: NaN"),
        ('{"body": "a\\u0000b"}', "at body: contains the NUL"),
        ('["\\ud800"]', "at [0]: contains a lone surrogate"),
        ("[" * 70 + "]" * 70, "deeper than 64 levels"),
    ],
)
def test_a_task_output_no_downstream_can_store_fails_the_attempt_for_good(
    output_json: str, says: str
) -> None:
    """A worker's output (a ``builtin.http`` response...) never reaches the projections."""
    run = Run("name: s\nsteps: [{id: a, task: t}]")
    run.start()
    ss = run.state.steps["a"]

    out = run.send(TaskSucceeded(ss.task_id or "", "a", 1, "step", output_json))

    assert types(out) == ["StepAttemptFailed", "StepFailed", "WorkflowFailed"]
    assert "the task's output holds a value no downstream can store" in out[0].error
    assert says in out[0].error


def test_an_output_merely_mentioning_nan_passes() -> None:
    run = Run("name: s\nsteps: [{id: a, task: t}]")
    run.start()

    out = run.succeed("a", {"fruit": "NaNa Infinity \\u0000", "list": [[[[1]]]]})

    assert types(out) == ["StepCompleted", "WorkflowCompleted"]


def test_a_start_input_or_signal_no_downstream_can_store_fails_the_workflow() -> None:
    run = Run("name: s\nsteps: [{id: wait, signal: go}]")
    assert types(run.send(StartWorkflow("s", 1, '{"x": Infinity}'))) == ["WorkflowFailed"]

    other = Run("name: s\nsteps: [{id: wait, signal: go}]", workflow_id="wf-2")
    other.start()
    out = other.send(SignalWorkflow(name="go", data_json='{"v": "\\u0000"}'))
    assert types(out) == ["WorkflowFailed"] and "at v: contains the NUL" in out[0].error


@pytest.mark.timeout(60)  # Python's re needed ~2^40 steps here: this never finished
def test_a_catastrophic_input_schema_pattern_cannot_stall_the_decider() -> None:
    run = Run(
        "name: s\ninput_schema: {properties: {s: {type: string, pattern: '^(a+)+$'}}}\n"
        "steps: [{id: a, task: t}]"
    )

    out = run.start({"s": "a" * 40 + "!"})

    assert types(out) == ["WorkflowStarted", "WorkflowFailed"]
    assert out[1].error.startswith("input does not match input_schema at s: ")
