"""Decider: retries with backoff and jitter, attempt timeouts, failure, saga compensation."""

from __future__ import annotations

from engine_harness import T0, Run, types

from foldflow.processors.decider.decision import jitter_fraction
from foldflow.schemas.messages import (
    CompensationScheduled,
    ExecuteTask,
    FireTimer,
    StepAttemptFailed,
    StepScheduled,
    TaskFailed,
    WorkflowCompensating,
    WorkflowCompensationFailed,
    WorkflowFailed,
)

RETRY = """
name: retry
steps:
  - id: a
    task: t
    timeout: 2s
    retry: {max_attempts: 3, initial_backoff: 1s, max_backoff: 3s, multiplier: 4, jitter: 0}
"""

SAGA = """
name: saga
steps:
  - id: reserve
    task: t
    retry: {max_attempts: 2}
    compensate: {task: release, input: {r: "${steps.reserve.output.id}"}}
  - id: charge
    task: t
    compensate: {task: refund, timeout: 1s}
    retry: {max_attempts: 2, initial_backoff: 1s, jitter: 0}
  - {id: log, task: t}
  - {id: ship, task: t, after: [reserve, charge, log], retry: {max_attempts: 1}}
"""


def test_a_failed_attempt_is_retried_after_exponential_backoff() -> None:
    run = Run(RETRY)
    run.start()
    out = run.fail("a", "flaky")
    assert out == [StepAttemptFailed("a", 1, "wf-1:a:run:1", "flaky", True, False, T0 + 1000)]
    assert run.state.timers == {"retry:a:2": T0 + 1000}
    out = run.fire("retry:a:2")
    assert (
        types(out) == ["StepScheduled"] and out[0].attempt == 2 and out[0].task_id == "wf-1:a:run:2"
    )
    out = run.fail("a")
    assert out[0].retry_at == run.now + 3000  # 1s * 4 = 4s, capped at max_backoff 3s
    run.fire("retry:a:3")
    assert types(run.succeed("a")) == ["StepCompleted", "WorkflowCompleted"]


def test_the_last_attempt_failing_fails_the_workflow() -> None:
    run = Run(RETRY)
    run.start()
    for attempt in (2, 3):
        run.fail("a")
        run.fire(f"retry:a:{attempt}")
    out = run.fail("a", "still broken")
    assert types(out) == ["StepAttemptFailed", "StepFailed", "WorkflowFailed"]
    assert out[0].retry_at is None
    assert out[2] == WorkflowFailed(error="step a failed: still broken", failed_step_id="a")
    assert run.state.status == "failed" and run.state.timers == {}


def test_a_non_retryable_failure_fails_at_once() -> None:
    run = Run(RETRY)
    run.start()
    assert types(run.fail("a", retryable=False)) == [
        "StepAttemptFailed",
        "StepFailed",
        "WorkflowFailed",
    ]


def test_an_attempt_timeout_is_a_retryable_failure() -> None:
    run = Run(RETRY)
    run.start()
    assert run.state.timers == {"timeout:a:1": T0 + 2000}
    out = run.fire("timeout:a:1")
    assert out == [
        StepAttemptFailed(
            "a", 1, "wf-1:a:run:1", "attempt 1 timed out after 2000ms", True, True, T0 + 3000
        )
    ]
    assert run.fire("retry:a:2")[0].attempt == 2
    # the timed-out attempt's late result is stale now
    assert run.send_envelope(run.message(run.history[2].payload)) == []


def test_a_timeout_the_worker_reports_is_timed_out_like_the_orchestrators() -> None:
    run = Run(SAGA)
    run.start()
    ss = run.state.steps["reserve"]
    out = run.send(
        TaskFailed(ss.task_id or "", "reserve", 1, "step", "timed out after 1000 ms", True, True)
    )
    assert types(out) == ["StepAttemptFailed"] and out[0].timed_out
    # an ordinary failure stays timed_out=false
    assert not run.fail("log")[0].timed_out
    run.fire("retry:reserve:2")
    run.succeed("reserve", {"id": "r"})
    run.fail("charge", retryable=False)
    comp = run.state.steps["reserve"]
    out = run.send(TaskFailed(comp.comp_task_id or "", "reserve", comp.comp_attempt,
                              "compensation", "timed out after 1000 ms", True, True))
    assert types(out) == ["CompensationAttemptFailed"] and out[0].timed_out


def test_a_timer_that_is_not_pending_produces_nothing() -> None:
    run = Run(RETRY)
    run.start()
    run.succeed("a")
    assert run.send(FireTimer("timeout:a:1", T0 + 2000)) == []
    assert run.send(FireTimer("retry:a:7", T0 + 2000)) == []


def test_jitter_is_deterministic_and_within_bounds() -> None:
    run = Run("name: j\nsteps: [{id: a, task: t, retry: {initial_backoff: 10s, jitter: 0.5}}]")
    run.start()
    out = run.fail("a")
    fraction = jitter_fraction("wf-1", "a", 1)
    assert 0 <= fraction < 1
    assert out[0].retry_at == T0 + round(10_000 * (0.5 + fraction))
    assert jitter_fraction("wf-1", "a", 1) == fraction != jitter_fraction("wf-2", "a", 1)


def _saga_to_ship() -> Run:
    run = Run(SAGA)
    run.start()
    run.succeed("charge", {"id": "ch"})
    run.succeed("log")
    out = run.succeed("reserve", {"id": "res-1"})
    assert [p.step_id for p in out if isinstance(p, StepScheduled)] == ["ship"]
    return run


def test_failure_compensates_completed_steps_in_reverse_completion_order() -> None:
    run = _saga_to_ship()
    out = run.fail("ship", "no trucks", retryable=False)
    assert types(out) == [
        "StepAttemptFailed",
        "StepFailed",
        "WorkflowCompensating",
        "CompensationScheduled",
    ]
    assert out[2] == WorkflowCompensating("failure", "step ship failed: no trucks", "ship")
    first = out[3]
    assert isinstance(first, CompensationScheduled)
    assert (first.step_id, first.task_type, first.task_id) == (
        "reserve",
        "release",
        "wf-1:reserve:compensate:1",
    )
    assert first.input_json == '{"r":"res-1"}'
    assert run.state.status == "compensating"
    out = run.succeed("reserve", compensation=True)
    assert types(out) == ["CompensationCompleted", "CompensationScheduled"]
    assert out[1].step_id == "charge" and out[1].timeout_ms == 1000
    out = run.succeed("charge", compensation=True)
    assert types(out) == ["CompensationCompleted", "WorkflowCompensated"]
    assert out[1].error == "step ship failed: no trucks"
    assert run.state.status == "compensated"
    kinds = [
        (c.payload.step_id, c.payload.kind)
        for c in run.commands()
        if isinstance(c.payload, ExecuteTask)
    ]
    assert kinds[-2:] == [("reserve", "compensation"), ("charge", "compensation")]


def test_nothing_to_compensate_fails_directly() -> None:
    run = Run(
        "name: n\nsteps: [{id: a, task: t}, {id: b, task: t, after: [a], retry: {max_attempts: 1}}]"
    )
    run.start()
    run.succeed("a")
    assert types(run.fail("b")) == ["StepAttemptFailed", "StepFailed", "WorkflowFailed"]


def test_a_compensation_is_retried_then_fails_the_workflow_for_good() -> None:
    run = _saga_to_ship()
    run.fail("ship", retryable=False)
    out = run.fail("reserve", "db down", compensation=True)
    assert types(out) == ["CompensationAttemptFailed"] and out[0].retry_at is not None
    assert list(run.state.timers) == ["comp-retry:reserve:2"]
    out = run.fire("comp-retry:reserve:2")
    assert types(out) == ["CompensationScheduled"] and out[0].attempt == 2
    stale = TaskFailed("wf-1:reserve:compensate:1", "reserve", 1, "compensation", "late")
    assert run.send(stale) == []
    out = run.fire("comp-timeout:reserve:2")
    assert types(out) == [
        "CompensationAttemptFailed",
        "CompensationFailed",
        "WorkflowCompensationFailed",
    ]
    assert out[0].timed_out
    assert out[2] == WorkflowCompensationFailed(
        error="compensation of step reserve failed: compensation attempt 2 timed out",
        step_id="reserve",
    )
    assert run.state.status == "compensation_failed" and run.state.timers == {}


def test_a_final_failure_waits_for_running_steps_that_may_need_undoing() -> None:
    run = Run(SAGA)
    run.start()
    run.succeed("reserve", {"id": "r"})
    run.fail("charge")  # attempt 1 of 2: a retry follows
    run.fire("retry:charge:2")
    # log (no compensation) is still running: it is not awaited, reserve is undone at once
    out = run.fail("charge", "declined", retryable=False)
    assert types(out) == [
        "StepAttemptFailed",
        "StepFailed",
        "WorkflowCompensating",
        "CompensationScheduled",
    ]
    assert out[3].step_id == "reserve"
    assert run.succeed("log") == []


def test_late_results_after_a_stop_follow_the_documented_choice() -> None:
    """Running compensable attempts are awaited (and undone); others are ignored."""
    run = Run(
        """
name: race
steps:
  - {id: slow, task: t, compensate: {task: undo}}
  - {id: plain, task: t}
  - {id: bad, task: t, retry: {max_attempts: 1}}
"""
    )
    run.start()
    out = run.fail("bad", "nope")
    assert types(out) == ["StepAttemptFailed", "StepFailed", "WorkflowCompensating"]
    assert set(run.state.timers) == {"timeout:slow:1"}  # plain's timeout is dropped
    assert run.succeed("plain") == []  # not compensable: ignored
    out = run.succeed("slow", {"v": 1})
    assert types(out) == ["StepCompleted", "CompensationScheduled"]
    run.succeed("slow", compensation=True)
    assert run.state.status == "compensated"


def test_an_awaited_attempt_failing_is_not_retried_and_nothing_is_undone() -> None:
    run = Run(
        """
name: race2
steps:
  - {id: slow, task: t, compensate: {task: undo}}
  - {id: bad, task: t, retry: {max_attempts: 1}}
"""
    )
    run.start()
    run.fail("bad", "nope")
    out = run.fire("timeout:slow:1")
    assert types(out) == ["StepAttemptFailed", "StepFailed", "WorkflowFailed"]
    assert out[0].retry_at is None
    assert out[2] == WorkflowFailed(error="step bad failed: nope", failed_step_id="bad")


def test_workflow_timeout_compensates() -> None:
    run = Run(
        """
name: slow
timeout: 10s
steps:
  - {id: a, task: t, compensate: {task: undo}}
  - {id: b, task: t, after: [a]}
"""
    )
    run.start()
    assert run.state.timers["workflow-timeout"] == T0 + 10_000
    run.succeed("a")
    out = run.fire("workflow-timeout")
    assert types(out) == ["WorkflowCompensating", "CompensationScheduled"]
    assert out[0] == WorkflowCompensating("timeout", "workflow timed out after 10000ms", None)
    assert run.succeed("b") == []  # b has no compensation: its late result is ignored
    assert types(run.succeed("a", compensation=True)) == [
        "CompensationCompleted",
        "WorkflowCompensated",
    ]


def test_workflow_timeout_with_nothing_to_undo_fails() -> None:
    run = Run("name: s\ntimeout: 1s\nsteps: [{id: a, task: t}]")
    run.start()
    assert run.fire("workflow-timeout") == [WorkflowFailed(error="workflow timed out after 1000ms")]
