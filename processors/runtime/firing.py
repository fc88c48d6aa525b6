"""The timer loop's output: ``timer.fire.v1`` commands for due timers (docs/internals.md).

A fire command's id is derived from (workflow, timer, due time), so however often a timer
fires the decider applies it once. The loop produces it to the workflow's own
``wf.commands`` partition inside the open transaction, in a span under the trace of the
input that set the timer (when this process handled it), so one trace follows a workflow
across its timers too.
"""

from __future__ import annotations

from foldflow.processors.runtime.timers import DueTimer
from foldflow.schemas.messages import Envelope, FireTimer, derived_id

__all__ = ["SOURCE", "fire_timer_command"]

SOURCE = "orchestrator"


def fire_timer_command(due: DueTimer, *, now: int, tenant: str | None = None) -> Envelope:
    """The ``timer.fire.v1`` for a due timer; its id is the same however often it fires."""
    return Envelope(
        event_id=derived_id(f"{due.workflow_id}:{due.timer_id}", due.due_at),
        timestamp=max(now, due.due_at),
        source=SOURCE,
        correlation_id=due.workflow_id,
        workflow_id=due.workflow_id,
        payload=FireTimer(timer_id=due.timer_id, due_at=due.due_at),
        tenant=tenant,
    )
