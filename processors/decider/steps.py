"""Running steps forward: start, schedule ready steps, attempts and retries, completion."""

from __future__ import annotations

from foldflow.definitions import Definition, Step
from foldflow.expressions import evaluate_condition, parse_condition
from foldflow.input_schema import input_violation
from foldflow.processors.decider.compensation import drive_compensation, stop
from foldflow.processors.decider.decision import (
    Decision,
    canonical,
    context,
    jitter_fraction,
    oversize,
    refused,
    render_json,
)
from foldflow.schemas.messages import (
    ChildWorkflowRequested,
    SignalReceived,
    StartWorkflow,
    StepAttemptFailed,
    StepCompleted,
    StepFailed,
    StepScheduled,
    StepSkipped,
    StepWaiting,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    dump_json,
    load_json,
    task_id,
)

__all__ = ["advance", "attempt_failed", "schedule_attempt", "start_workflow"]

_DONE = ("succeeded", "skipped")


def start_workflow(d: Decision, p: StartWorkflow, definition: Definition | None) -> None:
    """``WorkflowStarted`` (or ``WorkflowFailed`` for an unknown definition or bad input)."""
    if definition is None:
        version = "latest" if p.definition_version is None else str(p.definition_version)
        d.emit(WorkflowFailed(error=f"unknown definition {p.definition_name} v{version}"))
        return
    input_json = canonical(p.input_json)
    why = refused(input_json)
    if why is not None:  # it could not travel in workflow.started.v1, or be stored
        d.emit(WorkflowFailed(error=f"the workflow input {why}"))
        return
    d.emit(
        WorkflowStarted(
            definition_name=definition.name,
            definition_version=definition.version,
            definition_json=definition.canonical_json(),
            input_json=input_json,
            tenant=p.tenant,
            parent_workflow_id=p.parent_workflow_id,
            parent_step_id=p.parent_step_id,
        )
    )
    try:
        value = load_json(p.input_json)
    except ValueError as exc:
        d.emit(WorkflowFailed(error=f"input is not valid JSON: {exc}"))
        return
    if definition.input_schema is not None:
        violation = input_violation(definition.input_schema, value)
        if violation is not None:
            d.emit(WorkflowFailed(error=f"input does not match input_schema {violation}"))


def advance(d: Decision) -> None:
    """Start every ready step (unless paused), complete the workflow, drive compensation."""
    if d.state.status == "running":
        progressed = True
        while progressed and d.state.status == "running":
            progressed = False
            for step in d.definition.steps:
                ss = d.state.step(step.id)
                if ss.status != "pending":
                    continue
                if all(d.state.step(dep).status in _DONE for dep in step.after):
                    _start_step(d, step)
                    progressed = True
    if d.state.status in ("running", "paused") and all(
        d.state.step(s.id).status in _DONE for s in d.definition.steps
    ):
        _complete(d)
    if d.state.status == "compensating":  # also when starting a step just stopped it
        drive_compensation(d)


def _refuse_step(d: Decision, step: Step, attempt: int, error: str) -> None:
    """Fail a step whose message could not be produced, and so the workflow."""
    d.emit(StepFailed(step_id=step.id, attempt=attempt, error=error))
    stop(d, cause="failure", reason=f"step {step.id} failed: {error}", failed_step_id=step.id)


def _start_step(d: Decision, step: Step) -> None:
    if step.when is not None and not evaluate_condition(
        parse_condition(step.when), context(d.state)
    ):
        d.emit(StepSkipped(step_id=step.id, reason=f"condition is false: {step.when}"))
        return
    if step.kind == "task":
        schedule_attempt(d, step, 1)
    elif step.kind == "sleep":
        assert step.sleep is not None
        d.emit(StepWaiting(step_id=step.id, kind="sleep", until=d.now + step.sleep))
    elif step.kind == "signal":
        until = None if step.timeout is None else d.now + step.timeout
        d.emit(StepWaiting(step_id=step.id, kind="signal", until=until, signal_name=step.signal))
        for name, data in d.state.buffered_signals:
            if name == step.signal:
                d.emit(SignalReceived(name=name, data_json=data, step_id=step.id))
                d.emit(StepCompleted(step_id=step.id, attempt=1, output_json=data))
                break
    else:
        assert step.workflow is not None
        child = d.child_id(step.id)
        child_input = render_json(step.input, d.state)
        too_big = oversize(child_input)
        if too_big is not None:
            _refuse_step(d, step, 1, f"the child workflow's input {too_big}")
            return
        d.emit(
            ChildWorkflowRequested(
                step_id=step.id,
                child_workflow_id=child,
                definition_name=step.workflow,
                definition_version=step.version,
                input_json=child_input,
            )
        )
        until = None if step.timeout is None else d.now + step.timeout
        d.emit(StepWaiting(step_id=step.id, kind="child", until=until, child_workflow_id=child))


def schedule_attempt(d: Decision, step: Step, attempt: int) -> None:
    """Dispatch attempt ``attempt`` of a task step (an ``ExecuteTask`` follows in react)."""
    assert step.task is not None
    input_json = render_json(step.input, d.state)
    too_big = oversize(input_json)
    if too_big is not None:
        _refuse_step(d, step, attempt, f"the rendered input {too_big}")
        return
    d.emit(
        StepScheduled(
            step_id=step.id,
            attempt=attempt,
            task_id=task_id(d.state.workflow_id, step.id, attempt),
            task_type=step.task,
            input_json=input_json,
            timeout_ms=step.attempt_timeout_ms,
        )
    )


def attempt_failed(
    d: Decision, step_id: str, attempt: int, error: str, *, retryable: bool, timed_out: bool
) -> None:
    """An attempt failed: retry after backoff, or fail the step (and so the workflow)."""
    step = d.definition.step(step_id)
    ss = d.state.step(step_id)
    retry_at = None
    if retryable and attempt < step.retry.max_attempts and d.state.status != "compensating":
        fraction = jitter_fraction(d.state.workflow_id, step_id, attempt)
        retry_at = d.now + step.retry.backoff_ms(attempt, fraction)
    d.emit(
        StepAttemptFailed(
            step_id=step_id,
            attempt=attempt,
            task_id=ss.task_id or task_id(d.state.workflow_id, step_id, attempt),
            error=error,
            retryable=retryable,
            timed_out=timed_out,
            retry_at=retry_at,
        )
    )
    if retry_at is None:
        d.emit(StepFailed(step_id=step_id, attempt=attempt, error=error))
        if d.state.status in ("running", "paused"):
            stop(
                d, cause="failure", reason=f"step {step_id} failed: {error}", failed_step_id=step_id
            )


def _complete(d: Decision) -> None:
    output = d.definition.output
    if output is None:
        value = {
            s.id: load_json(d.state.step(s.id).output_json or "null")
            for s in d.definition.steps
            if d.state.step(s.id).status == "succeeded"
        }
        output_json = dump_json(value)
    else:
        output_json = render_json(output, d.state)
    too_big = oversize(output_json)
    if too_big is not None:
        stop(d, cause="failure", reason=f"the workflow output {too_big}", failed_step_id=None)
        return
    d.emit(WorkflowCompleted(output_json=output_json))
