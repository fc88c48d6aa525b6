"""The timer loop's output: ``timer.fire.v1`` commands for due timers (DESIGN §5).

A fire command's id is derived from (workflow, timer, due time), so however often a timer
fires the decider applies it once. It is sent in a span under the trace of the input that
set the timer (when this process handled it), so one trace follows a workflow across its
timers too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from foldflow.observability.tracing import extract_context
from foldflow.topics import Topology
from processors.runtime.timers import DueTimer, TimerIndex
from producers import Publisher
from schemas.messages import Envelope, FireTimer, derived_id

__all__ = ["SOURCE", "TimerFirer", "fire_timer_command"]

SOURCE = "orchestrator"
log = logging.getLogger(__name__)
_tracer = trace.get_tracer("foldflow.orchestrator")


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


class TimerFirer:
    """Sends ``timer.fire.v1`` to ``wf.commands`` for the due timers of an index."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        topology: Topology,
        index: TimerIndex,
        traces: Mapping[str, list[tuple[str, bytes]]],
    ) -> None:
        self.publisher = publisher
        self.topology = topology
        self.index = index
        self.traces = traces

    async def fire_due(self, owned: set[int], *, now_ms: int) -> int:
        """Fire every due timer of the ``owned`` partitions; return how many were acked.

        A timer whose command was not acked fires again (``pop_due`` re-armed it).
        """
        due = self.index.pop_due(now_ms, owned=owned)
        outcomes = await asyncio.gather(
            *(self._fire(d, now_ms=now_ms) for d in due), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            log.error("sending %d timer.fire.v1 failed: %s", len(failed), failed[0])
        return len(due) - len(failed)

    async def _fire(self, due: DueTimer, *, now_ms: int) -> None:
        parent = extract_context(self.traces.get(due.workflow_id))
        with _tracer.start_as_current_span(
            "orchestrator timer", context=parent, kind=SpanKind.PRODUCER,
            attributes={"foldflow.workflow_id": due.workflow_id, "foldflow.timer": due.timer_id},
        ):  # fmt: skip
            command = fire_timer_command(due, now=now_ms)
            await self.publisher.publish_async(self.topology.commands, command)
