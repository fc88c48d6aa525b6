"""What one input does to one workflow: the decider's events and the messages they cause.

Pure (no I/O): :func:`apply_input` runs ``decide``, folds the events with ``evolve`` and
collects, per event and in order, what ``react`` derives from it, each routed to its
topic: events to ``wf.events``, ``ExecuteTask`` to ``wf.tasks.<type>``,
``StartWorkflow``, ``CancelWorkflow`` and ``TerminateWorkflow`` of a child to
``wf.commands``, ``ChildFinished`` to ``wf.results``.
"""

from __future__ import annotations

from dataclasses import dataclass

from foldflow.definitions import Definition
from foldflow.processors.decider.decider import decide, evolve, react
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import (
    CancelWorkflow,
    ChildFinished,
    Envelope,
    ExecuteTask,
    StartWorkflow,
    TerminateWorkflow,
)
from foldflow.topics import Topology

__all__ = ["Plan", "apply_input", "plan_events", "route"]


@dataclass(frozen=True)
class Plan:
    """The outcome of one input: events, every message to produce and the state after."""

    events: tuple[Envelope, ...]
    messages: tuple[tuple[str, Envelope], ...]  # (topic, envelope): events first, in order
    state: WorkflowState
    #: the event type of the input decided on (telemetry tells a worker's report from a timer)
    input_type: str = ""


def route(message: Envelope, topology: Topology) -> str:
    """The topic a message derived by ``react`` goes to."""
    payload = message.payload
    if isinstance(payload, ExecuteTask):
        return topology.task(payload.task_type)
    if isinstance(payload, StartWorkflow | CancelWorkflow | TerminateWorkflow):
        return topology.commands
    if isinstance(payload, ChildFinished):
        return topology.results
    raise ValueError(f"react produced {message.event_type}, which has no route")


def apply_input(
    state: WorkflowState,
    message: Envelope,
    *,
    definition: Definition | None,
    topology: Topology,
) -> Plan:
    """Decide on ``message`` (``now`` = its timestamp) and derive everything that follows."""
    events = decide(state, message, message.timestamp, definition=definition)
    return plan_events(state, events, topology=topology, input_type=message.event_type)


def plan_events(state: WorkflowState, events: list[Envelope], *, topology: Topology,
                input_type: str = "") -> Plan:
    """Fold ``events`` into ``state`` and derive, per event and in order, what follows."""
    derived: list[tuple[str, Envelope]] = []
    for event in events:
        state = evolve(state, event)
        derived.extend((route(m, topology), m) for m in react(state, event))
    messages = [(topology.events, e) for e in events] + derived
    return Plan(
        events=tuple(events), messages=tuple(messages), state=state,
        input_type=input_type,
    )
