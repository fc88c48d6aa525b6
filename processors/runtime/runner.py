"""Handling the orchestrator's inputs: decode, decide, produce and wait, then store.

:class:`Orchestrator` is the effectful shell around :func:`processors.decider.plan.apply_input`.
It knows nothing of faust: the app hands it a batch of records and a way to read the
stored values, and stores what :meth:`Orchestrator.handle_batch` returns. That happens
only after every message produced for the batch was acked (DESIGN §5); inputs of one
workflow within a batch are applied in order, each to the state the previous one left.
Undecodable or invalid inputs go to ``wf.dlq`` with a reason and processing continues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

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
from processors.decider.decider import initial_state
from processors.decider.plan import Plan, apply_input
from processors.decider.state import (
    ACTIVE_STATUSES,
    WorkflowState,
    state_from_bytes,
    state_to_bytes,
)
from processors.runtime.definitions_cache import DefinitionsCache
from processors.runtime.stored import COMMANDS, RESULTS, Stored
from processors.runtime.telemetry import TaskTypes, record_ignored, record_plan
from processors.runtime.timers import TimerIndex
from producers import Publisher, PublishError
from schemas.codec import CodecError, decode
from schemas.messages import Envelope, ExecuteTask, StartWorkflow, kind_of

__all__ = ["HANDLER", "InputRecord", "Orchestrator"]

HANDLER = "orchestrator"
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


@dataclass
class _Applied:
    """An input whose events and messages are being published (its span still open)."""

    record: InputRecord
    key: bytes
    plan: Plan
    value: bytes
    span: Span
    started: float
    sending: asyncio.Future[Any] = field(repr=False)


class Orchestrator:
    """Applies inputs to workflow states; the faust app stores the values it returns."""

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
        #: workflow id -> trace headers of the input that last set its timers
        self.timer_traces: dict[str, list[tuple[str, bytes]]] = {}
        #: partition -> the next ``wf.events`` offset after the events acked since the last
        #: :meth:`take_events_end` (the catch-up marker, processors/catchup.py)
        self._events_end: dict[int, int] = {}
        self._task_types = TaskTypes()
        self._known_task_topics: set[str] = set()
        self._admin = AdminClient({
            "bootstrap.servers": settings.kafka_bootstrap,
            "log_level": 3,  # errors only: librdkafka writes its log lines to stderr
        })  # fmt: skip

    async def handle_batch(
        self, records: Sequence[InputRecord], load: Callable[[InputRecord], bytes | None]
    ) -> list[tuple[InputRecord, bytes]]:
        """Apply ``records`` in order; return ``(record, new table value)`` to store, in order.

        ``load(record)`` reads the stored value of the record's workflow. Returns only
        after every message of the batch was acked; a failed publish is retried (the
        messages are deterministic, so a retry re-sends identical ones) until it succeeds.
        """
        latest: dict[bytes, bytes | None] = {}
        applied: list[_Applied] = []
        for record in records:
            key = record.key or b""
            stored = latest[key] if key in latest else load(record)
            done = await self._apply(record, key, stored)
            if done is not None:
                latest[key] = done.value
                applied.append(done)
        for done in applied:
            await self._acked(done)
        for done in applied:
            self._finish(done)
        return [(done.record, done.value) for done in applied]

    async def _apply(
        self, record: InputRecord, key: bytes, stored: bytes | None
    ) -> _Applied | None:
        started = time.perf_counter()
        span = _tracer.start_span(
            "orchestrator handle",
            context=extract_context(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": record.topic,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
            },
        )
        with trace.use_span(span, end_on_exit=False):
            outcome = await self._decide(record, stored)
            if isinstance(outcome, str):
                span.end()
                self._observe(record, outcome, started)
                return None
            plan, current = outcome
            span.set_attribute("foldflow.workflow_id", plan.state.workflow_id)
            await self._ensure_task_topics(plan)
            # The task copies this context: the messages carry this input's trace.
            sending = asyncio.ensure_future(self.publisher.publish_many_async(plan.messages))
        source = RESULTS if record.topic == self.topology.results else COMMANDS
        value = current.advanced(state_to_bytes(plan.state), source, record.offset).to_bytes()
        return _Applied(record, key, plan, value, span, started, sending)

    async def _decide(self, record: InputRecord, stored: bytes | None) -> tuple[Plan, Stored] | str:
        """The plan for one record, or the outcome label when it produces nothing."""
        try:
            message = self._decode(record)
        except (CodecError, InvalidInput) as exc:
            await self._dead_letter(record, exc)
            return "dlq"
        source = RESULTS if record.topic == self.topology.results else COMMANDS
        try:
            current = Stored.from_bytes(stored) if stored else Stored(b"")
            if current.covers(source, record.offset):
                INPUTS_IGNORED.labels(reason="replayed").inc()
                log.debug(
                    "%s[%d]@%d is already in the stored state (offsets %s): skipped",
                    record.topic, record.partition, record.offset, current.offsets,
                    extra={"workflow_id": message.workflow_id},
                )
                return "skipped"
            state = (
                state_from_bytes(current.state) if stored
                else initial_state(message.workflow_id)
            )  # fmt: skip
            if state.workflow_id != message.workflow_id:
                raise RuntimeError(
                    f"the table gave the state of {state.workflow_id!r} for the key "
                    f"{message.workflow_id!r}"
                )
            plan = await self._plan(state, message)
        except Exception as exc:  # a bug must not stop every other workflow
            log.exception(
                "cannot apply %s", message.event_type, extra={"workflow_id": message.workflow_id}
            )
            await self._dead_letter(record, exc, kind=f"DeciderError.{type(exc).__name__}")
            return "dlq"
        if not plan.events:
            log.info(
                "%s ignored (%s): %s[%d]@%d", message.event_type, record_ignored(state, message),
                record.topic, record.partition, record.offset,
                extra={"workflow_id": message.workflow_id},
            )
            return "skipped"
        return plan, current

    async def _acked(self, done: _Applied) -> None:
        delay = 0.2
        while True:
            try:
                delivered = await done.sending
            except PublishError as exc:
                # Nothing was stored yet: re-sending gives the same deterministic messages.
                log.error("publishing failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                with trace.use_span(done.span, end_on_exit=False):
                    done.sending = asyncio.ensure_future(
                        self.publisher.publish_many_async(done.plan.messages)
                    )
                continue
            for msg in delivered:
                if msg.topic() == self.topology.events:
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    self._events_end[partition] = max(self._events_end.get(partition, 0),
                                                      offset + 1)  # fmt: skip
            return

    def take_events_end(self) -> dict[int, int]:
        """Per partition, the ``wf.events`` offset after the events acked since the last call."""
        ends, self._events_end = self._events_end, {}
        return ends

    def _finish(self, done: _Applied) -> None:
        state = done.plan.state
        record_plan(done.plan, self._task_types)
        self.index.update(
            state.workflow_id,
            partition=done.record.partition,
            timers=state.timers,
            active=state.status in ACTIVE_STATUSES,
        )
        with trace.use_span(done.span, end_on_exit=True):
            if state.timers:  # a fired timer continues the trace that set it
                self.timer_traces[state.workflow_id] = inject_headers()
            else:
                self.timer_traces.pop(state.workflow_id, None)
            log.debug(
                "applied %s: %d events", done.plan.events[0].event_type, len(done.plan.events),
                extra={"workflow_id": state.workflow_id},
            )
        self._observe(done.record, "ok", done.started)

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
            # Within the tenant the workflow will belong to (a child's is its parent's).
            definition = await self.definitions.resolve(
                payload.tenant, payload.definition_name, payload.definition_version
            )
            if definition is None:
                log.warning(
                    "unknown definition %s/%s:%s", payload.tenant, payload.definition_name,
                    payload.definition_version or "latest",
                    extra={"workflow_id": message.workflow_id},
                )
        return apply_input(state, message, definition=definition, topology=self.topology)

    async def _ensure_task_topics(self, plan: Plan) -> None:
        wanted = {
            m.payload.task_type
            for _, m in plan.messages
            if isinstance(m.payload, ExecuteTask)
            and self.topology.task(m.payload.task_type) not in self._known_task_topics
        }
        if wanted:
            await asyncio.to_thread(
                ensure_topics, self.settings, task_types=tuple(sorted(wanted)), admin=self._admin
            )
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
