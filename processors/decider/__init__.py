"""The pure core of the orchestrator: no clock, no randomness, no I/O (docs/internals.md).

``decide(state, message, now)`` gives the events an input causes, ``evolve`` folds an
event into the state, ``react`` derives the commands that follow from an event, and
:func:`apply_input` runs the three for one input. Everything that talks to Kafka lives in
:mod:`foldflow.processors.runtime`; nothing here may import it.
"""

from foldflow.processors.decider.decider import (
    StepState,
    WorkflowState,
    decide,
    evolve,
    foreign_tenant,
    initial_state,
    is_terminal,
    react,
    state_from_bytes,
    state_to_bytes,
)
from foldflow.processors.decider.failure import abandon
from foldflow.processors.decider.plan import Plan, apply_input, plan_events, route

__all__ = [
    "Plan",
    "StepState",
    "WorkflowState",
    "abandon",
    "apply_input",
    "decide",
    "evolve",
    "foreign_tenant",
    "initial_state",
    "is_terminal",
    "plan_events",
    "react",
    "route",
    "state_from_bytes",
    "state_to_bytes",
]
