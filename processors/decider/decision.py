"""One decision in progress: emitted events folded into a working state as they go.

Also the small pure helpers the decider's parts share: canonical JSON, the expression
context of a workflow, deterministic retry jitter.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from foldflow.definitions import Definition
from foldflow.expressions import render
from processors.decider.evolve import evolve
from processors.decider.state import WorkflowState
from schemas.messages import Envelope, Payload, StartWorkflow, dump_json, event_id_for

__all__ = [
    "SOURCE",
    "Decision",
    "canonical",
    "child_ended_error",
    "child_id",
    "child_reported",
    "context",
    "jitter_fraction",
    "render_json",
    "wants_signal",
]

#: The ``source`` of every event the decider emits.
SOURCE = "orchestrator"


class Decision:
    """Builds the events of one ``decide`` call; ``state`` always reflects them."""

    def __init__(self, state: WorkflowState, message: Envelope, now: int) -> None:
        self.state = state
        self.message = message
        self.now = now
        self.events: list[Envelope] = []
        # Events belong to the workflow's tenant (set by its start), whoever sent the input.
        payload = message.payload
        self.tenant = payload.tenant if isinstance(payload, StartWorkflow) else state.tenant

    @property
    def definition(self) -> Definition:
        """The workflow's pinned definition (only asked for once the workflow started)."""
        definition = self.state.definition
        assert definition is not None, "workflow has no definition"
        return definition

    def emit(self, payload: Payload) -> None:
        """Append the next event and fold it into the working state."""
        sequence = self.state.sequence + 1
        event = Envelope(
            event_id=event_id_for(self.state.workflow_id, sequence),
            timestamp=self.now,
            source=SOURCE,
            correlation_id=self.message.correlation_id,
            workflow_id=self.state.workflow_id,
            payload=payload,
            sequence=sequence,
            causation_id=self.message.event_id,
            tenant=self.tenant,
        )
        self.events.append(event)
        self.state = evolve(self.state, event)

    def child_id(self, step_id: str) -> str:
        """The deterministic id of the child workflow a child step starts."""
        return child_id(self.state.workflow_id, step_id)


def child_id(workflow_id: str, step_id: str) -> str:
    """The id of the child workflow that step ``step_id`` of ``workflow_id`` starts."""
    return f"{workflow_id}/{step_id}"


def child_ended_error(child: str, status: str, error: str | None) -> str:
    """The error of a child step whose child reported ending ``status`` (not completed)."""
    return f"child workflow {child} ended {status}" + (f": {error}" if error else "")


def child_reported(child: str, step_error: str) -> bool:
    """Whether a failed child step failed because its child reported its end.

    Otherwise (its wait timed out) the child may still be running. Events carry no cause,
    so this reads the error :func:`child_ended_error` wrote.
    """
    return step_error.startswith(f"child workflow {child} ended ")


def canonical(text: str) -> str:
    """Canonical JSON of a JSON text; text that is not JSON becomes a JSON string."""
    try:
        return dump_json(json.loads(text))
    except ValueError:
        return dump_json(text)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def context(state: WorkflowState) -> dict[str, Any]:
    """The expression context: workflow input, step outputs, delivered signals."""
    return {
        "input": _loads(state.input_json),
        "steps": {
            sid: {"output": _loads(ss.output_json)}
            for sid, ss in state.steps.items()
            if ss.output_json is not None
        },
        "signals": {name: _loads(data) for name, data in state.signals.items()},
    }


def render_json(mapping: Any, state: WorkflowState) -> str:
    """Render an input/output mapping against the state, as canonical JSON."""
    return dump_json(render(mapping, context(state)))


def jitter_fraction(workflow_id: str, step_id: str, attempt: int) -> float:
    """A deterministic fraction in [0, 1) from (workflow id, step, attempt)."""
    digest = hashlib.blake2b(f"{workflow_id}\x00{step_id}\x00{attempt}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def wants_signal(d: Decision, name: str) -> bool:
    """Whether a not-yet-started signal step will consume one more buffered ``name``."""
    future = sum(
        1
        for step in d.definition.steps
        if step.kind == "signal"
        and step.signal == name
        and d.state.step(step.id).status == "pending"
    )
    buffered = sum(1 for n, _ in d.state.buffered_signals if n == name)
    return future > buffered
