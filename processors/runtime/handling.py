"""One input, decided: what it does to its workflow and every record it produces.

:class:`InputHandler` is the step of the loop between "a record was read" and "produce
these records in the open transaction": decode and check the record, find the
workflow's current state (the open transaction's, else the committed one), run the pure
decider, then build and check every output (events, task commands, child commands) and
the workflow's new state record. It produces nothing itself and changes no state: the
loop does that with the :class:`Outcome`. The two things it asks of the outside world
come in as callables: the workflow's current state and a definition lookup.

An undecodable or invalid record, or one the decider raises on, becomes a ``wf.dlq``
record. An input whose outputs cannot be produced (:class:`~foldflow.processors.runtime.effects.
Unproducible`) fails its workflow instead (:func:`foldflow.processors.decider.abandon`); if even
that cannot be produced, the input goes to ``wf.dlq``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from foldflow.definitions import Definition
from foldflow.observability.metrics import INPUTS_IGNORED
from foldflow.processors.decider import Plan, abandon, apply_input, initial_state, plan_events
from foldflow.processors.decider.state import TERMINAL_STATUSES, WorkflowState
from foldflow.processors.runtime.effects import (
    OutputRecord,
    Unproducible,
    build_records,
    check_size,
)
from foldflow.processors.runtime.errors import Interrupt
from foldflow.processors.runtime.records import (
    DefinitionTable,
    definition_record,
    finished_record,
    live_record,
)
from foldflow.processors.runtime.store import FINISHED, Change
from foldflow.processors.runtime.telemetry import record_ignored
from foldflow.producers import dead_letter_headers
from foldflow.schemas.codec import CodecError, decode
from foldflow.schemas.messages import Envelope, ExecuteTask, StartWorkflow, kind_of
from foldflow.topics import Topology

__all__ = ["COMMANDS", "RESULTS", "Current", "InputHandler", "InputRecord", "Outcome"]

log = logging.getLogger(__name__)

COMMANDS = 0
RESULTS = 1

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record of ``wf.commands`` or ``wf.results`` as the consumer read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Current:
    """A workflow's state as the input finds it, and the input offsets it covers."""

    state: WorkflowState
    offsets: tuple[int, int] = (-1, -1)


#: current(workflow_id, partition) -> Current, FINISHED (finished and left memory), or None
Lookup = Callable[[str, int], "Current | object | None"]
#: resolve(tenant, name, version) -> the definition, or None when unknown
Resolve = Callable[[str, str, int | None], Definition | None]


@dataclass
class Outcome:
    """What the loop does with one input.

    ``label`` is the outcome of ``foldflow_messages_handled_total`` (ok, skipped, dlq,
    error: the workflow was failed because its outputs could not be produced).
    """

    label: str
    records: list[OutputRecord] = field(default_factory=list)
    change: Change | None = None
    plan: Plan | None = None
    dead_letter_kind: str | None = None
    task_types: frozenset[str] = frozenset()
    #: the trace headers the records carry (a timer the input set fires under them)
    trace: list[Header] = field(default_factory=list)


class InvalidInput(ValueError):
    """A decodable record the orchestrator must not apply (wrong kind, key mismatch)."""


class InputHandler:
    """Decides one input at a time (see the module docstring)."""

    def __init__(
        self,
        *,
        topology: Topology,
        definitions: DefinitionTable,
        max_message_bytes: int,
        lookup: Lookup,
        resolve: Resolve,
    ) -> None:
        self.topology = topology
        self.definitions = definitions
        self.limit = max_message_bytes
        self.lookup = lookup
        self.resolve = resolve
        self._checked: set[str] = set()  # definition digests whose record fits

    def handle(self, record: InputRecord, *, trace_headers: Callable[[], list[Header]]
               ) -> Outcome:  # fmt: skip
        """Decide ``record``; ``trace_headers()`` gives the headers carrying its span."""
        try:
            message = self._decode(record)
        except (CodecError, InvalidInput) as exc:
            return self.dead_letter(record, exc)
        wf = message.workflow_id
        current = self.lookup(wf, record.partition)
        if current is FINISHED:
            reason = record_ignored(None, message)
            log.info("%s ignored (%s): %s[%d]@%d", message.event_type, reason, record.topic,
                     record.partition, record.offset, extra={"workflow_id": wf})  # fmt: skip
            return Outcome("skipped")
        assert current is None or isinstance(current, Current)
        state = current.state if current is not None else initial_state(wf)
        offsets = current.offsets if current is not None else (-1, -1)
        source = RESULTS if record.topic == self.topology.results else COMMANDS
        if record.offset <= offsets[source]:
            INPUTS_IGNORED.labels(reason="replayed").inc()
            log.info("%s[%d]@%d is already in the state (offsets %s): skipped",
                     record.topic, record.partition, record.offset, offsets,
                     extra={"workflow_id": wf})  # fmt: skip
            return Outcome("skipped")
        try:
            plan = self._plan(state, message)
        except Interrupt:
            raise
        except Exception as exc:  # a bug must not stop every other workflow
            log.exception("cannot apply %s", message.event_type, extra={"workflow_id": wf})
            return self.dead_letter(record, exc, kind=f"DeciderError.{type(exc).__name__}")
        if not plan.events:
            reason = record_ignored(state, message)
            log.info("%s ignored (%s): %s[%d]@%d", message.event_type, reason, record.topic,
                     record.partition, record.offset, extra={"workflow_id": wf})  # fmt: skip
            return Outcome("skipped")
        covered = list(offsets)
        covered[source] = record.offset
        new_offsets = (covered[0], covered[1])
        headers = trace_headers()
        try:
            return self._outcome("ok", plan, record.partition, new_offsets, headers)
        except Unproducible as exc:
            return self._abandon(record, message, state, new_offsets, headers, exc)

    # --- decisions -----------------------------------------------------------------------

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

    def _plan(self, state: WorkflowState, message: Envelope) -> Plan:
        definition: Definition | None = None
        payload = message.payload
        if isinstance(payload, StartWorkflow) and state.status == "new":
            # Within the tenant the workflow will belong to (a child's is its parent's).
            definition = self.resolve(
                payload.tenant, payload.definition_name, payload.definition_version
            )
            if definition is None:
                log.warning(
                    "unknown definition %s/%s:%s", payload.tenant, payload.definition_name,
                    payload.definition_version or "latest",
                    extra={"workflow_id": message.workflow_id},
                )
        return apply_input(state, message, definition=definition, topology=self.topology)

    def _abandon(
        self,
        record: InputRecord,
        message: Envelope,
        state: WorkflowState,
        offsets: tuple[int, int],
        headers: list[Header],
        reason: Unproducible,
    ) -> Outcome:
        wf = message.workflow_id
        error = f"the outputs of {message.event_type} cannot be produced: {reason}"
        log.error("%s: failing the workflow", error, extra={"workflow_id": wf})
        events = abandon(state, message, message.timestamp, error=error)
        if not events:
            return self.dead_letter(record, reason, kind="Unproducible")
        plan = plan_events(state, events, topology=self.topology)
        try:
            return self._outcome("error", plan, record.partition, offsets, headers)
        except Unproducible as again:
            return self.dead_letter(record, again, kind="Unproducible")

    # --- records -------------------------------------------------------------------------

    def _outcome(
        self, label: str, plan: Plan, partition: int, offsets: tuple[int, int],
        headers: list[Header],
    ) -> Outcome:  # fmt: skip
        records = build_records(plan.messages, trace_headers=headers, limit=self.limit)
        state = plan.state
        key = state.workflow_id.encode()
        digest = None
        if state.status in TERMINAL_STATUSES:
            value = finished_record(state)
        else:
            if state.definition_json is not None:
                digest = self.definitions.add(state.definition_json)
                if digest not in self._checked:  # the definition record: checked once
                    definition = definition_record(self.definitions.get(digest) or "")
                    check_size(OutputRecord(self.topology.orchestrator_state, key, definition,
                                            ()), limit=self.limit,
                               what="the workflow's pinned definition")  # fmt: skip
                    self._checked.add(digest)
            value = live_record(state, digest=digest, offsets=offsets)
        state_record = OutputRecord(self.topology.orchestrator_state, key, value, (), partition)
        check_size(state_record, limit=self.limit, what="the workflow's state")
        task_types = frozenset(
            m.payload.task_type for _, m in plan.messages if isinstance(m.payload, ExecuteTask)
        )
        return Outcome(
            label, records, Change(partition, state, value, offsets, digest), plan,
            task_types=task_types, trace=headers,
        )

    def dead_letter(
        self, record: InputRecord, reason: BaseException, *, kind: str | None = None
    ) -> Outcome:
        """The ``wf.dlq`` record of an input that cannot be applied (its bytes, with why)."""
        log.warning("sending %s[%d]@%d to the DLQ: %s", record.topic, record.partition,
                    record.offset, reason)  # fmt: skip
        headers, reason_kind = dead_letter_headers(
            record.topic, record.headers, reason, partition=record.partition,
            offset=record.offset, reason_kind=kind,
        )  # fmt: skip
        parked = OutputRecord(self.topology.dlq, record.key or b"", record.value, headers)
        if parked.size > self.limit:  # the original bytes plus the dlq.* headers do not fit
            note = f" (the value, {len(record.value or b''):,} bytes, is not kept: too large)"
            headers = [(n, v + note.encode() if n == "dlq.reason" else v) for n, v in headers]
            parked = OutputRecord(self.topology.dlq, record.key or b"", None, headers)
        return Outcome("dlq", [parked], dead_letter_kind=reason_kind)


