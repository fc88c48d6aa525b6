"""``react``: the messages that follow from an event (the orchestrator as a process).

* ``StepScheduled`` / ``CompensationScheduled`` → ``ExecuteTask`` (to ``wf.tasks.<type>``)
* ``ChildWorkflowRequested`` → ``StartWorkflow`` of the child (to ``wf.commands``, key child id)
* a terminal event of a child workflow → ``ChildFinished`` (to ``wf.results``, key parent id),
  also when the child failed at once on an unknown definition
* the parent stopping while child steps wait → a command to each of those children (to
  ``wf.commands``, key child id): ``WorkflowTerminated`` → ``TerminateWorkflow``; the event
  that ends ``running``/``paused`` otherwise (``WorkflowCompensating``, or a terminal event
  without one before it) → ``CancelWorkflow``; a child step that failed without its child
  reporting (its wait timed out) → ``CancelWorkflow`` of that child

The target topic follows from the payload type; ids are ``derived_id(event.event_id, i)``.
"""

from __future__ import annotations

from foldflow.processors.decider.decision import SOURCE, child_id, child_reported, shown_id
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import (
    TERMINAL_STATUS,
    CancelWorkflow,
    ChildFinished,
    ChildWorkflowRequested,
    CompensationScheduled,
    Envelope,
    ExecuteTask,
    Payload,
    StartWorkflow,
    StepFailed,
    StepScheduled,
    TerminateWorkflow,
    WorkflowCompensating,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowTerminated,
    derived_id,
    split_workflow_key,
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
    out.extend(_close_children(state, event))
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


def _close_children(state: WorkflowState, event: Envelope) -> list[tuple[str, Payload]]:
    """What the children still running get when this workflow stops waiting for them.

    A child step whose status is ``waiting`` has a child the parent has not heard finish
    (its ``ChildFinished`` is ignored once the parent stopped, so the step stays
    ``waiting``). Every case has a single trigger event, so no child gets the same command
    twice: the children are cancelled when the parent leaves ``running``/``paused``
    (``WorkflowCompensating``, or a terminal event with no compensation before it, which
    ``stop_cause`` records) and terminated on ``WorkflowTerminated`` (also after a cancel:
    terminate overrides the child's compensation). A child that already ended ignores the
    command.
    """
    p = event.payload
    parent = event.workflow_id
    command: Payload
    if isinstance(p, StepFailed):
        child = child_id(parent, p.step_id)
        if _kind(state, p.step_id) != "child" or child_reported(child, p.error):
            return []
        return [(child, CancelWorkflow(reason=_because(parent, "stopped waiting", p.error)))]
    if isinstance(p, WorkflowTerminated):
        command = TerminateWorkflow(reason=_because(parent, "terminated", p.reason))
    elif isinstance(p, WorkflowCompensating):
        command = CancelWorkflow(reason=_because(parent, _STOPPED.get(p.cause, p.cause), p.reason))
    elif type(p) in TERMINAL_STATUS and state.stop_cause is None:
        command = CancelWorkflow(reason=_because(parent, TERMINAL_STATUS[type(p)], _error_of(p)))
    else:
        return []
    definition = state.definition
    if definition is None or not any(ss.status == "waiting" for ss in state.steps.values()):
        return []
    return [
        (child_id(parent, s.id), command)
        for s in definition.steps  # definition order: the ids derived are stable
        if s.kind == "child" and state.step(s.id).status == "waiting"
    ]


def _kind(state: WorkflowState, step_id: str) -> str | None:
    definition = state.definition
    if definition is None:
        return None
    return next((s.kind for s in definition.steps if s.id == step_id), None)


_STOPPED = {"cancel": "cancelled", "failure": "failed", "timeout": "timed out"}


def _because(parent: str, what: str, reason: str | None) -> str:
    return f"parent workflow {shown_id(parent)} {what}" + (f": {reason}" if reason else "")


def _parent_of(state: WorkflowState, event: Envelope) -> tuple[str, str] | None:
    """(parent id, parent step id) of a child workflow, else None.

    A child whose definition is unknown fails before ``WorkflowStarted`` could record its
    parent; its id (``<parent id>/<step id>``) still names it. A parent only accepts a
    ``ChildFinished`` for the child id it requested, so a stray one is harmless.
    """
    if state.parent_workflow_id and state.parent_step_id:
        return state.parent_workflow_id, state.parent_step_id
    if state.definition_json is None and isinstance(event.payload, WorkflowFailed):
        try:
            own_id = split_workflow_key(event.workflow_id)[1]
        except ValueError:
            return None
        if "/" in own_id:  # a child's; a root's id has none (its key's tenant part may)
            parent, _, step = event.workflow_id.rpartition("/")
            return parent, step
    return None


def _error_of(p: Payload) -> str | None:
    error = getattr(p, "error", None) or getattr(p, "reason", None)
    return error if isinstance(error, str) else None
