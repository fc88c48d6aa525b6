"""``react``: the messages that follow from an event (the orchestrator as a process).

* ``StepScheduled`` / ``CompensationScheduled`` → ``ExecuteTask`` (to ``wf.tasks.<type>``)
* ``ChildWorkflowRequested`` → ``StartWorkflow`` of the child (to ``wf.commands``, key child id)
* a terminal event of a child workflow → ``ChildFinished`` (to ``wf.results``, key parent id),
  also when the child failed at once on an unknown definition

The target topic follows from the payload type; ids are ``derived_id(event.event_id, i)``.
"""

from __future__ import annotations

from processors.decision import SOURCE
from processors.state import WorkflowState
from schemas.messages import (
    TERMINAL_STATUS,
    ChildFinished,
    ChildWorkflowRequested,
    CompensationScheduled,
    Envelope,
    ExecuteTask,
    Payload,
    StartWorkflow,
    StepScheduled,
    WorkflowCompleted,
    WorkflowFailed,
    derived_id,
)

__all__ = ["react"]


def react(state: WorkflowState, event: Envelope) -> list[Envelope]:
    """The commands that follow from ``event`` (``state``: the workflow's state after it)."""
    p = event.payload
    out: list[tuple[str, Payload]] = []
    if isinstance(p, StepScheduled | CompensationScheduled):
        kind = "step" if isinstance(p, StepScheduled) else "compensation"
        task = ExecuteTask(
            task_id=p.task_id,
            task_type=p.task_type,
            step_id=p.step_id,
            attempt=p.attempt,
            kind=kind,
            input_json=p.input_json,
            timeout_ms=p.timeout_ms,
        )
        out.append((event.workflow_id, task))
    elif isinstance(p, ChildWorkflowRequested):
        start = StartWorkflow(
            definition_name=p.definition_name,
            definition_version=p.definition_version,
            input_json=p.input_json,
            tenant=state.tenant,
            parent_workflow_id=event.workflow_id,
            parent_step_id=p.step_id,
        )
        out.append((p.child_workflow_id, start))
    elif type(p) in TERMINAL_STATUS and (parent := _parent_of(state, event)) is not None:
        status = TERMINAL_STATUS[type(p)]
        finished = ChildFinished(
            child_workflow_id=event.workflow_id,
            step_id=parent[1],
            status=status,
            output_json=p.output_json if isinstance(p, WorkflowCompleted) else None,
            error=None if isinstance(p, WorkflowCompleted) else _error_of(p),
        )
        out.append((parent[0], finished))
    return [
        Envelope(
            event_id=derived_id(event.event_id, i),
            timestamp=event.timestamp,
            source=SOURCE,
            correlation_id=event.correlation_id,
            workflow_id=key,
            payload=payload,
            causation_id=event.event_id,
            tenant=event.tenant,
        )
        for i, (key, payload) in enumerate(out)
    ]


def _parent_of(state: WorkflowState, event: Envelope) -> tuple[str, str] | None:
    """(parent id, parent step id) of a child workflow, else None.

    A child whose definition is unknown fails before ``WorkflowStarted`` could record its
    parent; its id (``<parent id>/<step id>``) still names it. A parent only accepts a
    ``ChildFinished`` for the child id it requested, so a stray one is harmless.
    """
    if state.parent_workflow_id and state.parent_step_id:
        return state.parent_workflow_id, state.parent_step_id
    if state.definition_json is None and isinstance(event.payload, WorkflowFailed):
        parent, _, step = event.workflow_id.rpartition("/")
        if parent and step:
            return parent, step
    return None


def _error_of(p: Payload) -> str | None:
    error = getattr(p, "error", None) or getattr(p, "reason", None)
    return error if isinstance(error, str) else None
