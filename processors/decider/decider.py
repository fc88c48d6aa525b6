"""The pure workflow decider (docs/internals.md "Decider").

``decide(state, message, now)`` returns the events an input causes; ``evolve`` folds an
event into the state; ``react(state, event)`` gives the messages that follow from an
event (task commands, child starts, a child's result to its parent). No clock, no
randomness, no I/O: ``now`` is the input's timestamp and retry jitter is a hash of
(workflow id, step, attempt). Semantics are documented in docs/definitions.md.

Internally a decision is a small builder: each emitted event is folded into a working
state at once, so later choices in the same decision see it, and folding the returned
events with ``evolve`` reproduces that working state by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from foldflow.definitions import Definition
from foldflow.processors.decider.compensation import (
    comp_attempt_failed,
    schedule_compensation,
    stop,
)
from foldflow.processors.decider.decision import (
    Decision,
    canonical,
    child_ended_error,
    foreign_tenant,
    refused,
    wants_signal,
)
from foldflow.processors.decider.evolve import evolve, initial_state, is_terminal
from foldflow.processors.decider.react import react
from foldflow.processors.decider.state import (
    StepState,
    WorkflowState,
    state_from_bytes,
    state_to_bytes,
)
from foldflow.processors.decider.steps import (
    advance,
    attempt_failed,
    schedule_attempt,
    start_workflow,
)
from foldflow.schemas.messages import (
    CancelWorkflow,
    ChildFinished,
    CompensationCompleted,
    Envelope,
    FireTimer,
    PauseWorkflow,
    ResumeWorkflow,
    SignalReceived,
    SignalWorkflow,
    StartWorkflow,
    StepCompleted,
    StepFailed,
    TaskFailed,
    TaskSucceeded,
    TerminateWorkflow,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowTerminated,
)

__all__ = [
    "StepState",
    "WorkflowState",
    "decide",
    "evolve",
    "foreign_tenant",
    "initial_state",
    "is_terminal",
    "react",
    "state_from_bytes",
    "state_to_bytes",
]


def decide(
    state: WorkflowState, message: Envelope, now: int, *, definition: Definition | None = None
) -> list[Envelope]:
    """The events ``message`` causes in a workflow in ``state`` (``[]``: nothing happens).

    ``definition`` is used by ``StartWorkflow`` only (None: unknown definition). An input
    from another tenant than the workflow's changes nothing (:func:`foreign_tenant`).
    """
    if message.event_id in state.applied or foreign_tenant(state, message):
        return []
    payload = message.payload
    decision = Decision(state, message, now)
    if isinstance(payload, StartWorkflow):
        if state.status != "new":
            return []
        start_workflow(decision, payload, definition)
    elif state.status == "new" or is_terminal(state):
        return []
    else:
        handler = _HANDLERS.get(type(payload))
        if handler is None:
            return []
        handler(decision, payload)
    if decision.events and not is_terminal(decision.state):
        advance(decision)
    return decision.events


# --- commands ----------------------------------------------------------------------------


def _pause(d: Decision, p: PauseWorkflow) -> None:
    if d.state.status == "running":
        d.emit(WorkflowPaused(reason=p.reason))


def _resume(d: Decision, p: ResumeWorkflow) -> None:
    if d.state.status != "paused":
        return
    d.emit(WorkflowResumed(reason=p.reason))
    for step in d.definition.steps:  # retries that came due during the pause go out now
        ss = d.state.step(step.id)
        due = d.state.pending_timers.get(f"retry:{step.id}:{ss.attempt + 1}")
        if ss.status == "backoff" and due is not None and due <= d.now:
            schedule_attempt(d, step, ss.attempt + 1)


def _cancel(d: Decision, p: CancelWorkflow) -> None:
    if d.state.status in ("running", "paused"):
        stop(d, cause="cancel", reason=p.reason or "cancelled", failed_step_id=None)


def _terminate(d: Decision, p: TerminateWorkflow) -> None:
    d.emit(WorkflowTerminated(reason=p.reason))


def _signal(d: Decision, p: SignalWorkflow) -> None:
    if d.state.status not in ("running", "paused"):
        return
    data = canonical(p.data_json)
    why = refused(data)
    if why is not None:  # past the gateway's bounds: written straight to Kafka
        reason = f"signal {p.name!r}: its data {why}"
        stop(d, cause="failure", reason=reason, failed_step_id=None)
        return
    for step in d.definition.steps:
        if (
            step.kind == "signal"
            and step.signal == p.name
            and d.state.step(step.id).status == "waiting"
        ):
            d.emit(SignalReceived(name=p.name, data_json=data, step_id=step.id))
            d.emit(StepCompleted(step_id=step.id, attempt=1, output_json=data))
            return
    if wants_signal(d, p.name):
        d.emit(SignalReceived(name=p.name, data_json=data, step_id=None))


# --- results -----------------------------------------------------------------------------


def _accepts_step_result(d: Decision, step_id: str, attempt: int, task: str) -> bool:
    ss = d.state.steps.get(step_id)
    if ss is None or ss.status != "scheduled" or ss.attempt != attempt or ss.task_id != task:
        return False
    if d.state.status == "compensating":  # only attempts that may need undoing are awaited
        return d.definition.step(step_id).compensate is not None
    return True


def _accepts_comp_result(d: Decision, step_id: str, attempt: int, task: str) -> bool:
    ss = d.state.steps.get(step_id)
    return (
        ss is not None
        and ss.status == "compensating"
        and ss.comp_attempt == attempt
        and ss.comp_task_id == task
    )


def _task_succeeded(d: Decision, p: TaskSucceeded) -> None:
    if p.kind == "compensation":
        if _accepts_comp_result(d, p.step_id, p.attempt, p.task_id):
            d.emit(CompensationCompleted(step_id=p.step_id, attempt=p.attempt, task_id=p.task_id))
    elif _accepts_step_result(d, p.step_id, p.attempt, p.task_id):
        output = canonical(p.output_json)
        why = refused(output)
        if why is not None:  # it would not fit the workflow's state and events, or be stored
            error = f"the task's output {why}"
            attempt_failed(d, p.step_id, p.attempt, error, retryable=False, timed_out=False)
            return
        d.emit(
            StepCompleted(
                step_id=p.step_id, attempt=p.attempt, output_json=output, task_id=p.task_id
            )
        )


def _task_failed(d: Decision, p: TaskFailed) -> None:
    if p.kind == "compensation":
        if _accepts_comp_result(d, p.step_id, p.attempt, p.task_id):
            comp_attempt_failed(
                d, p.step_id, p.attempt, p.error, retryable=p.retryable, timed_out=p.timed_out
            )
    elif _accepts_step_result(d, p.step_id, p.attempt, p.task_id):
        attempt_failed(
            d, p.step_id, p.attempt, p.error, retryable=p.retryable, timed_out=p.timed_out
        )


def _child_finished(d: Decision, p: ChildFinished) -> None:
    if d.state.status not in ("running", "paused"):
        return
    ss = d.state.steps.get(p.step_id)
    step = next((s for s in d.definition.steps if s.id == p.step_id), None)
    if ss is None or step is None or step.kind != "child" or ss.status != "waiting":
        return
    if p.child_workflow_id != d.child_id(p.step_id):
        return
    if p.status == "completed":
        d.emit(
            StepCompleted(
                step_id=p.step_id, attempt=1, output_json=canonical(p.output_json or "null")
            )
        )
    else:
        error = child_ended_error(p.child_workflow_id, p.status, p.error)
        d.emit(StepFailed(step_id=p.step_id, attempt=1, error=error))
        stop(
            d, cause="failure", reason=f"step {p.step_id} failed: {error}", failed_step_id=p.step_id
        )


# --- timers ------------------------------------------------------------------------------


def _fire_timer(d: Decision, p: FireTimer) -> None:
    timer = p.timer_id
    if timer not in d.state.timers:
        return
    kind, _, rest = timer.partition(":")
    step_id, _, attempt_text = rest.rpartition(":") if kind in _ATTEMPT_TIMERS else (rest, "", "")
    attempt = int(attempt_text) if attempt_text else 0
    if kind == "timeout":
        step = d.definition.step(step_id)
        error = f"attempt {attempt} timed out after {step.attempt_timeout_ms}ms"
        attempt_failed(d, step_id, attempt, error, retryable=True, timed_out=True)
    elif kind == "retry":
        schedule_attempt(d, d.definition.step(step_id), attempt)
    elif kind == "sleep":
        d.emit(StepCompleted(step_id=step_id, attempt=1, output_json="null"))
    elif kind in ("signal-timeout", "child-timeout"):
        step = d.definition.step(step_id)
        what = (
            f"signal {step.signal!r}"
            if kind == "signal-timeout"
            else f"child workflow {step.workflow!r}"
        )
        error = f"timed out waiting for {what}"
        d.emit(StepFailed(step_id=step_id, attempt=1, error=error))
        stop(d, cause="failure", reason=f"step {step_id} failed: {error}", failed_step_id=step_id)
    elif kind == "workflow-timeout":
        timeout = d.definition.timeout
        stop(
            d, cause="timeout", reason=f"workflow timed out after {timeout}ms", failed_step_id=None
        )
    elif kind == "comp-timeout":
        error = f"compensation attempt {attempt} timed out"
        comp_attempt_failed(d, step_id, attempt, error, retryable=True, timed_out=True)
    elif kind == "comp-retry":
        schedule_compensation(d, d.definition.step(step_id), attempt)


_ATTEMPT_TIMERS = ("timeout", "retry", "comp-timeout", "comp-retry")

_HANDLERS: dict[type, Callable[[Decision, Any], None]] = {
    PauseWorkflow: _pause,
    ResumeWorkflow: _resume,
    CancelWorkflow: _cancel,
    TerminateWorkflow: _terminate,
    SignalWorkflow: _signal,
    TaskSucceeded: _task_succeeded,
    TaskFailed: _task_failed,
    ChildFinished: _child_finished,
    FireTimer: _fire_timer,
}
