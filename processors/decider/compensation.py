"""Stopping a workflow (failure, cancel, timeout) and running its saga compensations.

On a stop, attempts already out for steps that have a compensation are awaited (their
result may need undoing); everything else stops at once and late results are ignored.
Then the completed steps' compensations run one at a time in reverse completion order,
each retried by its step's policy.
"""

from __future__ import annotations

from foldflow.definitions import Step
from foldflow.processors.decider.decision import Decision, jitter_fraction, oversize, render_json
from foldflow.schemas.messages import (
    CompensationAttemptFailed,
    CompensationFailed,
    CompensationScheduled,
    WorkflowCancelled,
    WorkflowCompensated,
    WorkflowCompensating,
    WorkflowCompensationFailed,
    WorkflowFailed,
    task_id,
)

__all__ = ["comp_attempt_failed", "drive_compensation", "schedule_compensation", "stop"]


def _in_flight(d: Decision) -> list[Step]:
    """Steps with a compensation whose attempt is still out."""
    return [
        s
        for s in d.definition.steps
        if s.compensate is not None and d.state.step(s.id).status == "scheduled"
    ]


def _to_compensate(d: Decision) -> list[str]:
    """Completed steps with a compensation still to run, most recent first."""
    steps = {s.id: s for s in d.definition.steps}
    return [
        sid
        for sid in reversed(d.state.completion_order)
        if steps[sid].compensate is not None and d.state.step(sid).status == "succeeded"
    ]


def stop(d: Decision, *, cause: str, reason: str, failed_step_id: str | None) -> None:
    """End a running workflow: compensate if anything may need undoing, else end now."""
    if not _in_flight(d) and not _to_compensate(d):
        if cause == "cancel":
            d.emit(WorkflowCancelled(reason=reason))
        else:
            d.emit(WorkflowFailed(error=reason, failed_step_id=failed_step_id))
        return
    d.emit(WorkflowCompensating(cause=cause, reason=reason, failed_step_id=failed_step_id))


def drive_compensation(d: Decision) -> None:
    """Schedule the next compensation, or end the workflow when none is left."""
    busy = ("compensating", "compensation_backoff")
    if any(d.state.step(s.id).status in busy for s in d.definition.steps) or _in_flight(d):
        return
    pending = _to_compensate(d)
    if pending:
        schedule_compensation(d, d.definition.step(pending[0]), 1)
        return
    reason = d.state.stop_reason or ""
    if d.state.stop_cause == "cancel":
        d.emit(WorkflowCancelled(reason=reason))
    elif any(d.state.step(s.id).status == "compensated" for s in d.definition.steps):
        d.emit(WorkflowCompensated(error=reason))
    else:  # the awaited attempts all failed: nothing was undone
        d.emit(WorkflowFailed(error=reason, failed_step_id=d.state.failed_step_id))


def schedule_compensation(d: Decision, step: Step, attempt: int) -> None:
    """Dispatch attempt ``attempt`` of a step's compensation task."""
    comp = step.compensate
    assert comp is not None
    input_json = render_json(comp.input, d.state)
    too_big = oversize(input_json)
    if too_big is not None:  # it cannot be dispatched: the compensation fails for good
        error = f"the rendered compensation input {too_big}"
        d.emit(CompensationFailed(step_id=step.id, attempt=attempt, error=error))
        d.emit(
            WorkflowCompensationFailed(
                error=f"compensation of step {step.id} failed: {error}", step_id=step.id
            )
        )
        return
    d.emit(
        CompensationScheduled(
            step_id=step.id,
            attempt=attempt,
            task_id=task_id(d.state.workflow_id, step.id, attempt, compensation=True),
            task_type=comp.task,
            input_json=input_json,
            timeout_ms=comp.timeout if comp.timeout is not None else step.attempt_timeout_ms,
        )
    )


def comp_attempt_failed(
    d: Decision, step_id: str, attempt: int, error: str, *, retryable: bool, timed_out: bool
) -> None:
    """A compensation attempt failed: retry by the step's policy, or fail for good."""
    step = d.definition.step(step_id)
    retry_at = None
    if retryable and attempt < step.retry.max_attempts:
        fraction = jitter_fraction(d.state.workflow_id, f"{step_id}#compensate", attempt)
        retry_at = d.now + step.retry.backoff_ms(attempt, fraction)
    d.emit(
        CompensationAttemptFailed(
            step_id=step_id,
            attempt=attempt,
            task_id=task_id(d.state.workflow_id, step_id, attempt, compensation=True),
            error=error,
            timed_out=timed_out,
            retry_at=retry_at,
        )
    )
    if retry_at is None:
        d.emit(CompensationFailed(step_id=step_id, attempt=attempt, error=error))
        d.emit(
            WorkflowCompensationFailed(
                error=f"compensation of step {step_id} failed: {error}", step_id=step_id
            )
        )
