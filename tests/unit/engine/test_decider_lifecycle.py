"""Decider: pause and resume, cancel (with and without compensation), terminate."""

from __future__ import annotations

from engine_harness import T0, Run, types

from foldflow.schemas.messages import (
    CancelWorkflow,
    FireTimer,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    TerminateWorkflow,
    WorkflowCancelled,
    WorkflowCompensating,
    WorkflowPaused,
    WorkflowTerminated,
)

CHAIN = """
name: chain
steps:
  - {id: a, task: t, compensate: {task: undo-a}, retry: {initial_backoff: 1s, jitter: 0}}
  - {id: b, task: t, after: [a]}
"""


def test_pause_stops_new_dispatch_until_resume() -> None:
    run = Run(CHAIN)
    run.start()
    assert run.send(PauseWorkflow("maintenance")) == [WorkflowPaused("maintenance")]
    assert run.state.status == "paused"
    assert run.send(PauseWorkflow()) == []  # already paused
    assert types(run.succeed("a")) == ["StepCompleted"]  # running ones may finish; b waits
    out = run.send(ResumeWorkflow())
    assert types(out) == ["WorkflowResumed", "StepScheduled"] and out[1].step_id == "b"
    assert run.send(ResumeWorkflow()) == []  # not paused


def test_a_retry_that_comes_due_while_paused_dispatches_on_resume() -> None:
    run = Run(CHAIN)
    run.start()
    run.fail("a")
    assert run.state.timers == {"retry:a:2": T0 + 1000}
    run.send(PauseWorkflow())
    assert run.state.timers == {}  # the retry waits out the pause; the timer loop skips it
    run.now = T0 + 5000
    assert run.send(FireTimer("retry:a:2", T0 + 1000)) == []
    out = run.send(ResumeWorkflow())
    assert types(out) == ["WorkflowResumed", "StepScheduled"] and out[1].attempt == 2


def test_a_retry_not_yet_due_at_resume_waits_for_its_timer() -> None:
    run = Run(CHAIN)
    run.start()
    run.fail("a")
    run.send(PauseWorkflow())
    assert types(run.send(ResumeWorkflow())) == ["WorkflowResumed"]
    assert run.state.timers == {"retry:a:2": T0 + 1000}
    assert types(run.fire("retry:a:2")) == ["StepScheduled"]


def test_cancel_compensates_then_ends_cancelled() -> None:
    run = Run(CHAIN)
    run.start()
    run.succeed("a")
    out = run.send(CancelWorkflow("customer asked"))
    assert out[0] == WorkflowCompensating("cancel", "customer asked", None)
    assert types(out) == ["WorkflowCompensating", "CompensationScheduled"]
    assert run.send(CancelWorkflow()) == []  # already stopping
    assert run.succeed("b") == []  # b has no compensation: its result is ignored
    out = run.succeed("a", compensation=True)
    assert types(out) == ["CompensationCompleted", "WorkflowCancelled"]
    assert out[1] == WorkflowCancelled("customer asked")
    assert run.state.status == "cancelled"


def test_cancel_with_nothing_to_undo_ends_at_once() -> None:
    run = Run("name: c\nsteps: [{id: a, task: t}]")
    run.start()
    assert run.send(CancelWorkflow()) == [WorkflowCancelled("cancelled")]


def test_cancel_while_paused_still_compensates() -> None:
    run = Run(CHAIN)
    run.start()
    run.succeed("a")
    run.send(PauseWorkflow())
    assert types(run.send(CancelWorkflow())) == ["WorkflowCompensating", "CompensationScheduled"]


def test_terminate_ends_at_once_without_compensation() -> None:
    run = Run(CHAIN)
    run.start()
    run.succeed("a")
    assert run.send(TerminateWorkflow("stuck")) == [WorkflowTerminated("stuck")]
    assert run.state.status == "terminated" and run.state.timers == {}


def test_terminate_during_compensation() -> None:
    run = Run(CHAIN)
    run.start()
    run.succeed("a")
    run.send(CancelWorkflow())
    assert types(run.send(TerminateWorkflow())) == ["WorkflowTerminated"]


def test_commands_on_a_terminal_workflow_produce_nothing() -> None:
    run = Run("name: c\nsteps: [{id: a, task: t}]")
    run.start()
    run.send(TerminateWorkflow())
    for command in (
        PauseWorkflow(),
        ResumeWorkflow(),
        CancelWorkflow(),
        TerminateWorkflow(),
        SignalWorkflow("x"),
    ):
        assert run.send(command) == []


def test_commands_before_start_produce_nothing() -> None:
    run = Run("name: c\nsteps: [{id: a, task: t}]")
    for command in (PauseWorkflow(), CancelWorkflow(), TerminateWorkflow(), SignalWorkflow("x")):
        assert run.send(command) == []
