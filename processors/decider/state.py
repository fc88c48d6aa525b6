"""The orchestrator's per-workflow state and its byte form for the state table.

State is immutable: :func:`foldflow.processors.decider.evolve.evolve` returns a new one per
event. It is self-contained (it carries the pinned definition's canonical JSON), so the
decider needs nothing but the state and the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foldflow.definitions import Definition
from foldflow.schemas.messages import TERMINAL_STATUS, dump_json

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "StepState",
    "WorkflowState",
    "state_from_bytes",
    "state_to_bytes",
]

#: Terminal workflow statuses; ``new`` is a workflow not started yet.
TERMINAL_STATUSES = frozenset(TERMINAL_STATUS.values())
ACTIVE_STATUSES = frozenset({"running", "paused", "compensating"})

#: Timers that wait while a workflow is paused (they would dispatch a task).
_SUSPENDED_WHILE_PAUSED = ("retry:",)


@dataclass(frozen=True)
class StepState:
    """One step of a workflow instance.

    ``status``: pending, scheduled (an attempt is out), backoff (waiting for a retry),
    waiting (sleep/signal/child), succeeded, failed, skipped, compensating (a compensation
    attempt is out), compensation_backoff, compensated, compensation_failed.
    """

    status: str = "pending"
    attempt: int = 0
    task_id: str | None = None
    output_json: str | None = None
    error: str | None = None
    comp_attempt: int = 0
    comp_task_id: str | None = None


@dataclass(frozen=True)
class WorkflowState:
    """Everything the decider knows about one workflow; rebuilt by folding its events."""

    workflow_id: str
    status: str = "new"
    sequence: int = 0
    definition_name: str | None = None
    definition_version: int | None = None
    definition_json: str | None = None
    input_json: str = "null"
    tenant: str = "default"
    parent_workflow_id: str | None = None
    parent_step_id: str | None = None
    steps: Mapping[str, StepState] = field(default_factory=dict)
    pending_timers: Mapping[str, int] = field(default_factory=dict)
    completion_order: tuple[str, ...] = ()
    signals: Mapping[str, str] = field(default_factory=dict)
    buffered_signals: tuple[tuple[str, str], ...] = ()
    stop_cause: str | None = None
    stop_reason: str | None = None
    failed_step_id: str | None = None
    output_json: str | None = None
    error: str | None = None
    applied: tuple[str, ...] = ()

    @property
    def timers(self) -> Mapping[str, int]:
        """Pending timers (id → due ms) the timer loop should fire; retries wait out a pause."""
        if self.status != "paused":
            return self.pending_timers
        return {
            k: v
            for k, v in self.pending_timers.items()
            if not k.startswith(_SUSPENDED_WHILE_PAUSED)
        }

    @property
    def definition(self) -> Definition | None:
        """The pinned definition (parsed once per distinct JSON, cached)."""
        return Definition.from_json(self.definition_json) if self.definition_json else None

    def step(self, step_id: str) -> StepState:
        """The state of one step (a fresh pending one if unknown)."""
        return self.steps.get(step_id, _PENDING)


_PENDING = StepState()


_FORMAT = b"ffstate1\n"


def state_to_bytes(state: WorkflowState) -> bytes:
    """Serialise a state; :func:`state_from_bytes` reverses it exactly.

    Layout: a format line, the definition's canonical JSON as it is (it never contains a
    raw newline, and copying it spares re-escaping it on every write), then the rest of
    the state as canonical JSON.
    """
    raw = dict(state.__dict__)
    raw["steps"] = {k: v.__dict__ for k, v in state.steps.items()}
    definition = raw.pop("definition_json")
    head = b"" if definition is None else definition.encode("utf-8")
    return b"".join((_FORMAT, head, b"\n", dump_json(raw).encode("utf-8")))


def state_from_bytes(data: bytes) -> WorkflowState:
    """Read a state written by :func:`state_to_bytes`."""
    if not data.startswith(_FORMAT):
        raise ValueError("not a workflow state written by state_to_bytes")
    head, _, body = data[len(_FORMAT) :].partition(b"\n")
    raw: dict[str, Any] = json.loads(body)
    raw["definition_json"] = head.decode("utf-8") if head else None
    raw["steps"] = {k: StepState(**v) for k, v in raw["steps"].items()}
    raw["completion_order"] = tuple(raw["completion_order"])
    raw["buffered_signals"] = tuple((n, d) for n, d in raw["buffered_signals"])
    raw["applied"] = tuple(raw["applied"])
    return WorkflowState(**raw)
