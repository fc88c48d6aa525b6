"""``evolve``: fold one workflow event into the state (the Decider's mutator).

Pure and total: an event it does not handle leaves the state as it was (but still
advances ``sequence`` and remembers the input that caused it). Every timer is derived
from an event here, so folding a workflow's events from :func:`initial_state`
reproduces exactly the state the orchestrator stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from foldflow.frozen import replace
from foldflow.processors.decider.state import TERMINAL_STATUSES, StepState, WorkflowState
from foldflow.schemas.messages import (
    CompensationAttemptFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationScheduled,
    Envelope,
    SignalReceived,
    StepAttemptFailed,
    StepCompleted,
    StepFailed,
    StepScheduled,
    StepSkipped,
    StepWaiting,
    WorkflowCancelled,
    WorkflowCompensated,
    WorkflowCompensating,
    WorkflowCompensationFailed,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowTerminated,
)

__all__ = ["APPLIED_INPUTS_KEPT", "evolve", "initial_state", "is_terminal"]

#: How many applied input ids a state remembers for idempotency.
APPLIED_INPUTS_KEPT = 256


def initial_state(workflow_id: str) -> WorkflowState:
    """The state of a workflow before its first event (status ``new``)."""
    return WorkflowState(workflow_id=workflow_id)


def is_terminal(state: WorkflowState) -> bool:
    """Whether the workflow has ended (no input will change it any more)."""
    return state.status in TERMINAL_STATUSES


def evolve(state: WorkflowState, event: Envelope) -> WorkflowState:
    """The state after ``event``."""
    applied = state.applied
    cause = event.causation_id
    if cause is not None and (not applied or applied[-1] != cause):
        applied = (*applied, cause)[-APPLIED_INPUTS_KEPT:]
    state = replace(state, sequence=event.sequence or state.sequence, applied=applied)
    handler = _HANDLERS.get(type(event.payload))
    return handler(state, event.payload, event.timestamp) if handler else state


# --- helpers -----------------------------------------------------------------------------

def _step(state: WorkflowState, step_id: str, **changes: Any) -> WorkflowState:
    steps = dict(state.steps)
    steps[step_id] = replace(state.step(step_id), **changes)
    return replace(state, steps=steps)


def _timers(
    state: WorkflowState, *, drop: tuple[str, ...] = (), add: Mapping[str, int] | None = None
) -> WorkflowState:
    timers = {k: v for k, v in state.pending_timers.items() if k not in drop}
    timers.update(add or {})
    return replace(state, pending_timers=timers)


def _wait_timers(step_id: str) -> tuple[str, ...]:
    return (f"sleep:{step_id}", f"signal-timeout:{step_id}", f"child-timeout:{step_id}")


def _end(state: WorkflowState, status: str, **changes: Any) -> WorkflowState:
    return replace(state, status=status, pending_timers={}, **changes)


# --- workflow events ---------------------------------------------------------------------


def _started(state: WorkflowState, e: WorkflowStarted, ts: int) -> WorkflowState:
    state = replace(
        state,
        status="running",
        definition_name=e.definition_name,
        definition_version=e.definition_version,
        definition_json=e.definition_json,
        input_json=e.input_json,
        tenant=e.tenant,
        parent_workflow_id=e.parent_workflow_id,
        parent_step_id=e.parent_step_id,
    )
    definition = state.definition
    assert definition is not None
    state = replace(state, steps={s.id: StepState() for s in definition.steps})
    if definition.timeout is not None:
        state = _timers(state, add={"workflow-timeout": ts + definition.timeout})
    return state


def _compensating(state: WorkflowState, e: WorkflowCompensating, ts: int) -> WorkflowState:
    definition = state.definition
    assert definition is not None
    # Only attempts of steps that could need undoing are still awaited; all else stops.
    keep = {
        f"timeout:{s.id}:{state.step(s.id).attempt}"
        for s in definition.steps
        if s.compensate is not None and state.step(s.id).status == "scheduled"
    }
    timers = {k: v for k, v in state.pending_timers.items() if k in keep}
    return replace(
        state,
        status="compensating",
        stop_cause=e.cause,
        stop_reason=e.reason,
        failed_step_id=e.failed_step_id,
        pending_timers=timers,
    )


# --- step events -------------------------------------------------------------------------


def _scheduled(state: WorkflowState, e: StepScheduled, ts: int) -> WorkflowState:
    state = _step(state, e.step_id, status="scheduled", attempt=e.attempt, task_id=e.task_id)
    return _timers(
        state,
        drop=(f"retry:{e.step_id}:{e.attempt}",),
        add={f"timeout:{e.step_id}:{e.attempt}": ts + e.timeout_ms},
    )


def _completed(state: WorkflowState, e: StepCompleted, ts: int) -> WorkflowState:
    state = _step(state, e.step_id, status="succeeded", output_json=e.output_json, error=None)
    state = replace(state, completion_order=(*state.completion_order, e.step_id))
    return _timers(state, drop=(f"timeout:{e.step_id}:{e.attempt}", *_wait_timers(e.step_id)))


def _attempt_failed(state: WorkflowState, e: StepAttemptFailed, ts: int) -> WorkflowState:
    state = _timers(state, drop=(f"timeout:{e.step_id}:{e.attempt}",))
    if e.retry_at is None:
        return _step(state, e.step_id, error=e.error)
    state = _step(state, e.step_id, status="backoff", error=e.error)
    return _timers(state, add={f"retry:{e.step_id}:{e.attempt + 1}": e.retry_at})


def _failed(state: WorkflowState, e: StepFailed, ts: int) -> WorkflowState:
    state = _step(state, e.step_id, status="failed", error=e.error)
    return _timers(state, drop=(f"timeout:{e.step_id}:{e.attempt}", *_wait_timers(e.step_id)))


def _waiting(state: WorkflowState, e: StepWaiting, ts: int) -> WorkflowState:
    state = _step(state, e.step_id, status="waiting", attempt=1)
    if e.until is None:
        return state
    prefix = {"sleep": "sleep", "signal": "signal-timeout", "child": "child-timeout"}[e.kind]
    return _timers(state, add={f"{prefix}:{e.step_id}": e.until})


def _signal(state: WorkflowState, e: SignalReceived, ts: int) -> WorkflowState:
    if e.step_id is None:
        return replace(state, buffered_signals=(*state.buffered_signals, (e.name, e.data_json)))
    # Delivered to a step: if one was buffered under this name, that is the one consumed
    # (a live signal never meets a buffered one: a waiting step drains the buffer first).
    buffered = list(state.buffered_signals)
    for i, (name, _) in enumerate(buffered):
        if name == e.name:
            del buffered[i]
            break
    return replace(
        state,
        buffered_signals=tuple(buffered),
        signals={**state.signals, e.name: e.data_json},
    )


# --- compensation events -----------------------------------------------------------------


def _comp_scheduled(state: WorkflowState, e: CompensationScheduled, ts: int) -> WorkflowState:
    state = _step(
        state, e.step_id, status="compensating", comp_attempt=e.attempt, comp_task_id=e.task_id
    )
    return _timers(
        state,
        drop=(f"comp-retry:{e.step_id}:{e.attempt}",),
        add={f"comp-timeout:{e.step_id}:{e.attempt}": ts + e.timeout_ms},
    )


def _comp_completed(state: WorkflowState, e: CompensationCompleted, ts: int) -> WorkflowState:
    state = _step(state, e.step_id, status="compensated")
    return _timers(state, drop=(f"comp-timeout:{e.step_id}:{e.attempt}",))


def _comp_attempt_failed(
    state: WorkflowState, e: CompensationAttemptFailed, ts: int
) -> WorkflowState:
    state = _timers(state, drop=(f"comp-timeout:{e.step_id}:{e.attempt}",))
    if e.retry_at is None:
        return _step(state, e.step_id, error=e.error)
    state = _step(state, e.step_id, status="compensation_backoff", error=e.error)
    return _timers(state, add={f"comp-retry:{e.step_id}:{e.attempt + 1}": e.retry_at})


def _comp_failed(state: WorkflowState, e: CompensationFailed, ts: int) -> WorkflowState:
    return _step(state, e.step_id, status="compensation_failed", error=e.error)


_HANDLERS: dict[type, Callable[[WorkflowState, Any, int], WorkflowState]] = {
    WorkflowStarted: _started,
    WorkflowPaused: lambda s, e, ts: replace(s, status="paused"),
    WorkflowResumed: lambda s, e, ts: replace(s, status="running"),
    WorkflowCompleted: lambda s, e, ts: _end(s, "completed", output_json=e.output_json),
    WorkflowFailed: lambda s, e, ts: _end(
        s, "failed", error=e.error, failed_step_id=e.failed_step_id
    ),
    WorkflowCompensating: _compensating,
    WorkflowCompensated: lambda s, e, ts: _end(s, "compensated", error=e.error),
    WorkflowCompensationFailed: lambda s, e, ts: _end(s, "compensation_failed", error=e.error),
    WorkflowCancelled: lambda s, e, ts: _end(s, "cancelled", error=e.reason),
    WorkflowTerminated: lambda s, e, ts: _end(s, "terminated", error=e.reason),
    StepScheduled: _scheduled,
    StepCompleted: _completed,
    StepAttemptFailed: _attempt_failed,
    StepFailed: _failed,
    StepSkipped: lambda s, e, ts: _step(s, e.step_id, status="skipped"),
    StepWaiting: _waiting,
    SignalReceived: _signal,
    CompensationScheduled: _comp_scheduled,
    CompensationCompleted: _comp_completed,
    CompensationAttemptFailed: _comp_attempt_failed,
    CompensationFailed: _comp_failed,
}
