"""Handling one input of the orchestrator: decode, decide, produce and wait, then store.

:class:`Orchestrator` is the effectful shell around :func:`processors.plan.apply_input`.
It knows nothing of faust: the app gives it a record and the stored state bytes and
stores what :meth:`Orchestrator.handle` returns, after every produced message was acked
(DESIGN §5). Undecodable or invalid inputs go to ``wf.dlq`` with a reason and processing
continues. The timer loop's ``timer.fire.v1`` commands are built here as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from foldflow.admin import ensure_topics
from foldflow.definitions import Definition
from foldflow.observability.metrics import (
    INPUTS_IGNORED,
    MESSAGE_HANDLING_SECONDS,
    MESSAGES_HANDLED,
)
from foldflow.observability.tracing import Header, extract_context, inject_headers
from foldflow.settings import Settings
from foldflow.topics import Topology
from processors.decider import initial_state
from processors.definitions_cache import DefinitionsCache
from processors.plan import Plan, apply_input
from processors.state import ACTIVE_STATUSES, WorkflowState, state_from_bytes, state_to_bytes
from processors.stored import COMMANDS, RESULTS, Stored
from processors.telemetry import TaskTypes, record_ignored, record_plan
from processors.timers import DueTimer, TimerIndex
from producers import Publisher, PublishError
from schemas.codec import CodecError, decode
from schemas.messages import Envelope, ExecuteTask, FireTimer, StartWorkflow, derived_id, kind_of

__all__ = ["HANDLER", "InputRecord", "Orchestrator", "fire_timer_command"]

HANDLER = "orchestrator"
SOURCE = "orchestrator"
log = logging.getLogger(__name__)
_tracer = trace.get_tracer("foldflow.orchestrator")


@dataclass(frozen=True)
class InputRecord:
    """One record of ``wf.commands`` or ``wf.results`` as the consumer read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header]


class InvalidInput(ValueError):
    """A decodable record the orchestrator must not apply (wrong kind, key mismatch)."""


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


class Orchestrator:
    """Applies inputs to workflow states; the faust app stores the states it returns."""

    def __init__(
        self,
        settings: Settings,
        *,
        publisher: Publisher,
        definitions: DefinitionsCache,
        index: TimerIndex,
    ) -> None:
        self.settings = settings
        self.topology = Topology.of(settings)
        self.publisher = publisher
        self.definitions = definitions
        self.index = index
        self._task_types = TaskTypes()
        self._known_task_topics: set[str] = set()
        self._timer_trace: dict[str, list[tuple[str, bytes]]] = {}

    async def handle(self, record: InputRecord, stored: bytes | None) -> bytes | None:
        """Apply one record; return the new table value to store, or None to store nothing.

        ``stored`` is the workflow's table value (:class:`~processors.stored.Stored`); a
        record it already covers (a replay after a crash) is skipped.

        Returns only after every produced message was acked; retries publishing (the
        messages are deterministic, so a retry re-sends identical ones) until it succeeds.
        """
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            "orchestrator handle",
            context=extract_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": record.topic,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
            },
        ) as span:
            try:
                message = self._decode(record)
            except (CodecError, InvalidInput) as exc:
                await self._dead_letter(record, exc)
                self._observe(record, "dlq", started)
                return None
            span.set_attribute("foldflow.workflow_id", message.workflow_id)
            span.set_attribute("foldflow.event_type", message.event_type)
            source = RESULTS if record.topic == self.topology.results else COMMANDS
            try:
                current = Stored.from_bytes(stored) if stored else Stored(b"")
                if current.covers(source, record.offset):
                    INPUTS_IGNORED.labels(reason="replayed").inc()
                    self._observe(record, "skipped", started)
                    return None
                state = (
                    state_from_bytes(current.state) if stored
                    else initial_state(message.workflow_id)
                )  # fmt: skip
                plan = await self._plan(state, message)
            except Exception as exc:  # a bug must not stop every other workflow
                log.exception(
                    "cannot apply %s", message.event_type,
                    extra={"workflow_id": message.workflow_id},
                )
                await self._dead_letter(record, exc, kind=f"DeciderError.{type(exc).__name__}")
                self._observe(record, "dlq", started)
                return None
            if not plan.events:
                record_ignored(state, message)
                self._observe(record, "skipped", started)
                return None
            await self._publish(plan)
            record_plan(plan, self._task_types)
            self.index.update(
                message.workflow_id,
                partition=record.partition,
                timers=plan.state.timers,
                active=plan.state.status in ACTIVE_STATUSES,
            )
            if plan.state.timers:  # a fired timer continues the trace that set it
                self._timer_trace[message.workflow_id] = inject_headers()
            else:
                self._timer_trace.pop(message.workflow_id, None)
            log.debug(
                "applied %s: %d events", message.event_type, len(plan.events),
                extra={"workflow_id": message.workflow_id},
            )
            self._observe(record, "ok", started)
            return current.advanced(state_to_bytes(plan.state), source, record.offset).to_bytes()

    def _decode(self, record: InputRecord) -> Envelope:
        if record.value is None:
            raise InvalidInput("record has no value (tombstone)")
        message = decode(record.value)
        kind = kind_of(message.payload)
        if kind not in ("command", "result"):
            raise InvalidInput(f"{message.event_type} is a {kind}, not a command or result")
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != message.workflow_id:
            raise InvalidInput(
                f"record key {key!r} differs from the envelope's workflow_id "
                f"{message.workflow_id!r}"
            )
        return message

    async def _plan(self, state: WorkflowState, message: Envelope) -> Plan:
        definition: Definition | None = None
        payload = message.payload
        if isinstance(payload, StartWorkflow) and state.status == "new":
            definition = await self.definitions.resolve(
                payload.definition_name, payload.definition_version
            )
            if definition is None:
                log.warning(
                    "unknown definition %s:%s", payload.definition_name,
                    payload.definition_version or "latest",
                    extra={"workflow_id": message.workflow_id},
                )
        return apply_input(state, message, definition=definition, topology=self.topology)

    async def _publish(self, plan: Plan) -> None:
        await self._ensure_task_topics(plan)
        delay = 0.2
        while True:
            try:
                await self.publisher.publish_many_async(list(plan.messages))
                return
            except PublishError as exc:
                # Nothing was stored yet: retrying re-sends the same deterministic messages.
                log.error("publishing failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ensure_task_topics(self, plan: Plan) -> None:
        wanted = {
            m.payload.task_type
            for _, m in plan.messages
            if isinstance(m.payload, ExecuteTask)
            and self.topology.task(m.payload.task_type) not in self._known_task_topics
        }
        if wanted:
            await asyncio.to_thread(ensure_topics, self.settings, task_types=tuple(sorted(wanted)))
            self._known_task_topics.update(self.topology.task(t) for t in wanted)

    async def _dead_letter(
        self, record: InputRecord, reason: BaseException, *, kind: str | None = None
    ) -> None:
        log.warning(
            "sending %s[%d]@%d to the DLQ: %s", record.topic, record.partition, record.offset,
            reason,
        )
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(
                    self.publisher.send_to_dlq,
                    record.topic, record.key, record.value, record.headers, reason,
                    partition=record.partition, offset=record.offset, reason_kind=kind,
                )  # fmt: skip
                return
            except PublishError as exc:
                log.error("DLQ publish failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _observe(self, record: InputRecord, outcome: str, started: float) -> None:
        MESSAGES_HANDLED.labels(topic=record.topic, handler=HANDLER, outcome=outcome).inc()
        MESSAGE_HANDLING_SECONDS.labels(topic=record.topic, handler=HANDLER).observe(
            time.perf_counter() - started
        )

    async def fire_due_timers(self, owned: set[int], *, now_ms: int) -> int:
        """Send ``timer.fire.v1`` for every due timer of the ``owned`` partitions.

        Each is sent in a span under the trace of the input that set the timer (when this
        process handled it), so one trace keeps following the workflow across its timers.
        """
        due = self.index.pop_due(now_ms, owned=owned)
        outcomes = await asyncio.gather(
            *(self._fire(d, now_ms=now_ms) for d in due), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            # pop_due re-armed them: they fire again after its refire interval
            log.error("sending %d timer.fire.v1 failed: %s", len(failed), failed[0])
        return len(due) - len(failed)

    async def _fire(self, due: DueTimer, *, now_ms: int) -> None:
        parent = extract_context(self._timer_trace.get(due.workflow_id))
        with _tracer.start_as_current_span(
            "orchestrator timer", context=parent, kind=SpanKind.PRODUCER,
            attributes={"foldflow.workflow_id": due.workflow_id, "foldflow.timer": due.timer_id},
        ):  # fmt: skip
            command = fire_timer_command(due, now=now_ms)
            await self.publisher.publish_async(self.topology.commands, command)
