"""Decider: sleep steps, signal steps (buffering, timeout), child workflows."""

from __future__ import annotations

import json

from engine_harness import T0, Run, types

from foldflow.processors.decider import react
from foldflow.processors.decider.decision import context
from foldflow.schemas.messages import (
    ChildFinished,
    ChildWorkflowRequested,
    SignalReceived,
    SignalWorkflow,
    StartWorkflow,
    StepWaiting,
)

SLEEP = """
name: nap
steps: [{id: a, task: t}, {id: zz, sleep: 1500ms, after: [a]}, {id: b, task: t, after: [zz]}]
"""

APPROVAL = """
name: approval
steps:
  - {id: submit, task: t}
  - {id: wait, signal: approve, timeout: 1m, after: [submit]}
  - id: act
    task: t
    after: [wait]
    input: {by: "${signals.approve.by}", all: "${steps.wait.output}"}
"""

PARENT = """
name: parent
steps:
  - {id: prep, task: t}
  - id: kid
    workflow: child-def
    version: 2
    after: [prep]
    input: {x: "${steps.prep.output}"}
    timeout: 5m
  - {id: after, task: t, after: [kid], input: {r: "${steps.kid.output.r}"}}
"""


def test_sleep_step_waits_for_its_timer() -> None:
    run = Run(SLEEP)
    run.start()
    out = run.succeed("a")
    assert out[1] == StepWaiting(step_id="zz", kind="sleep", until=T0 + 1500)
    assert "sleep:zz" in run.state.timers
    out = run.fire("sleep:zz")
    assert types(out) == ["StepCompleted", "StepScheduled"]


def test_signal_delivered_to_a_waiting_step() -> None:
    run = Run(APPROVAL)
    run.start()
    out = run.succeed("submit")
    assert out[1] == StepWaiting(
        step_id="wait", kind="signal", until=T0 + 60_000, signal_name="approve"
    )
    out = run.send(SignalWorkflow("approve", '{"by": "ana"}'))
    assert types(out) == ["SignalReceived", "StepCompleted", "StepScheduled"]
    assert out[0] == SignalReceived("approve", '{"by":"ana"}', "wait")
    assert json.loads(out[2].input_json) == {"by": "ana", "all": {"by": "ana"}}
    assert "signal-timeout:wait" not in run.state.timers


def test_an_early_signal_is_buffered_and_consumed_when_the_step_waits() -> None:
    run = Run(APPROVAL)
    run.start()
    out = run.send(SignalWorkflow("approve", '{"by": "bo"}'))
    assert out == [SignalReceived("approve", '{"by":"bo"}', None)]
    assert run.state.buffered_signals == (("approve", '{"by":"bo"}'),)
    # a second early signal: only one step will ever wait for it, so nobody will take it
    assert run.send(SignalWorkflow("approve", '{"by": "cy"}')) == []
    out = run.succeed("submit")
    assert types(out) == [
        "StepCompleted",
        "StepWaiting",
        "SignalReceived",
        "StepCompleted",
        "StepScheduled",
    ]
    assert out[2] == SignalReceived("approve", '{"by":"bo"}', "wait")
    assert run.state.buffered_signals == ()


def test_a_signal_nobody_waits_for_produces_nothing() -> None:
    run = Run(APPROVAL)
    run.start()
    assert run.send(SignalWorkflow("other", "1")) == []
    run.succeed("submit")
    run.send(SignalWorkflow("approve", "{}"))
    assert run.send(SignalWorkflow("approve", "{}")) == []  # the step already got one


def test_a_signal_timeout_fails_the_step() -> None:
    run = Run(APPROVAL)
    run.start()
    run.succeed("submit")
    out = run.fire("signal-timeout:wait")
    assert types(out) == ["StepFailed", "WorkflowFailed"]
    assert out[0].error == "timed out waiting for signal 'approve'"
    assert run.send(SignalWorkflow("approve", "{}")) == []


def test_child_step_requests_a_child_and_waits() -> None:
    run = Run(PARENT)
    run.start()
    out = run.succeed("prep", {"p": 1})
    assert types(out) == ["StepCompleted", "ChildWorkflowRequested", "StepWaiting"]
    assert out[1] == ChildWorkflowRequested("kid", "wf-1/kid", "child-def", 2, '{"x":{"p":1}}')
    assert out[2] == StepWaiting("kid", "child", T0 + 300_000, None, "wf-1/kid")
    start = react(run.state, run.history[-2])
    assert len(start) == 1 and start[0].workflow_id == "wf-1/kid"
    assert start[0].payload == StartWorkflow(
        "child-def", 2, '{"x":{"p":1}}', "default", "wf-1", "kid"
    )


def test_child_completed_completes_the_step() -> None:
    run = Run(PARENT)
    run.start()
    run.succeed("prep")
    assert (
        run.send(ChildFinished("wf-9/kid", "kid", "completed", '{"r": 5}')) == []
    )  # not our child
    out = run.send(ChildFinished("wf-1/kid", "kid", "completed", '{"r": 5}'))
    assert types(out) == ["StepCompleted", "StepScheduled"]
    assert json.loads(out[1].input_json) == {"r": 5}
    assert run.send(ChildFinished("wf-1/kid", "kid", "completed", '{"r": 5}')) == []  # duplicate


def test_child_failing_fails_the_step() -> None:
    run = Run(PARENT)
    run.start()
    run.succeed("prep")
    out = run.send(ChildFinished("wf-1/kid", "kid", "compensated", None, "card declined"))
    assert types(out) == ["StepFailed", "WorkflowFailed"]
    assert out[0].error == "child workflow wf-1/kid ended compensated: card declined"


def test_a_finished_child_reports_to_its_parent() -> None:
    child = Run("name: child-def\nsteps: [{id: a, task: t}]", workflow_id="wf-1/kid")
    child.start({"x": 1}, parent_workflow_id="wf-1", parent_step_id="kid")
    child.succeed("a", {"r": 2})
    finished = react(child.state, child.history[-1])
    assert len(finished) == 1 and finished[0].workflow_id == "wf-1"
    assert finished[0].payload == ChildFinished(
        "wf-1/kid", "kid", "completed", '{"a":{"r":2}}', None
    )

    failing = Run("name: child-def\nsteps: [{id: a, task: t}]", workflow_id="wf-2/kid")
    failing.start(parent_workflow_id="wf-2", parent_step_id="kid")
    failing.fail("a", "bad", retryable=False)
    report = react(failing.state, failing.history[-1])[0].payload
    assert report == ChildFinished("wf-2/kid", "kid", "failed", None, "step a failed: bad")


def test_a_child_that_does_not_finish_in_time_fails_the_step() -> None:
    run = Run(PARENT)
    run.start()
    run.succeed("prep")
    out = run.fire("child-timeout:kid")
    assert types(out) == ["StepFailed", "WorkflowFailed"]
    assert out[0].error == "timed out waiting for child workflow 'child-def'"
    assert run.send(ChildFinished("wf-1/kid", "kid", "completed", "{}")) == []


def test_a_child_with_an_unknown_definition_still_reports_to_its_parent() -> None:
    child = Run(None, workflow_id="wf-1/kid")
    child.send(StartWorkflow("child-def", 2, "{}", "default", "wf-1", "kid"))
    report = react(child.state, child.history[-1])
    assert [(r.workflow_id, r.payload) for r in report] == [
        (
            "wf-1",
            ChildFinished("wf-1/kid", "kid", "failed", None, "unknown definition child-def v2"),
        )
    ]
    parent = Run(PARENT)
    parent.start()
    parent.succeed("prep")
    out = parent.send(report[0].payload)
    assert types(out) == ["StepFailed", "WorkflowFailed"]
    # an ordinary workflow that fails to start reports to nobody
    plain = Run(None, workflow_id="plain")
    plain.send(StartWorkflow("x", 1, "{}"))
    assert react(plain.state, plain.history[-1]) == []


def test_the_expression_context_reads_input_outputs_and_signals_as_a_mapping() -> None:
    run = Run(APPROVAL)
    run.start()
    run.succeed("submit")
    run.send(SignalWorkflow("approve", '{"by": "ana"}'))
    ctx = context(run.state)  # parsed part by part as expressions read it
    assert len(ctx) == 3 and ctx.get("nothing") is None
    assert dict(ctx) == {
        "input": {},
        "steps": {"submit": {"output": None}, "wait": {"output": {"by": "ana"}}},
        "signals": {"approve": {"by": "ana"}},
    }
