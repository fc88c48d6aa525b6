"""Failing a workflow whose input's effects cannot be produced (pure, like the decider).

The runtime checks every output of a decision before it produces anything (encodable,
within the record size limit). When one cannot be produced, whatever is tried again,
that input fails its workflow instead: :func:`abandon` is the decision it makes then,
given the state before the input. The workflow fails at once, without compensation (a
compensation task is itself an output that might not be producible); a parent hears of
it and waiting children are cancelled, as for any failure (``react``). Deterministic:
the same state, input and error give the same events.
"""

from __future__ import annotations

from foldflow.processors.decider.decision import Decision
from foldflow.processors.decider.evolve import is_terminal
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import Envelope, WorkflowFailed

__all__ = ["abandon"]

#: The longest error text an abandoned workflow records (the error names the output).
MAX_ERROR_CHARS = 2_000


def abandon(state: WorkflowState, message: Envelope, now: int, *, error: str) -> list[Envelope]:
    """The events that fail the workflow ``message`` was for, because of ``error``.

    Nothing when the input was applied already or the workflow has ended. A workflow not
    started yet (its start is the input) fails without a ``WorkflowStarted``, like a
    start of an unknown definition.
    """
    if message.event_id in state.applied or is_terminal(state):
        return []
    decision = Decision(state, message, now)
    text = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
    decision.emit(WorkflowFailed(error=text))
    return decision.events
