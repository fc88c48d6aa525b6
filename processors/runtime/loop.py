"""The orchestrator's loop: consume, decide, produce, commit, in Kafka transactions.

One thread, no asyncio (docs/internals.md). Each turn polls ``wf.commands`` + ``wf.results``
(``read_committed``), decides every input against the working state of the open
transaction (:mod:`foldflow.processors.runtime.handling`), produces its records in that
transaction, fires the timers that came due, and commits once the transaction is
``orchestrator_commit_interval_ms`` old (stretched up to 5x while the loop is saturated:
group commit) or holds ``orchestrator_commit_max_inputs`` inputs. It sleeps until the next due
timer, the commit deadline or a record, whichever comes first. The commit is a named
sequence, as in Kafka Streams' ``StreamThread``:

1. produce the state record of every workflow the transaction changed (one each,
   coalesced), after any definition record they reference;
2. ``send_offsets_to_transaction(input offsets, group metadata)`` (under a watchdog,
   librdkafka #5456);
3. ``commit_transaction()``;
4. only then merge the working state into the committed store and the timer index.

Steps 2 and 3 run on a helper thread while the loop goes on (a pipelined commit): it takes
and decides the next inputs against the working state of the committing transaction
stacked under a new one, whose records wait in memory until the commit returns and the
producer can begin the next transaction (librdkafka has one at a time). One commit is in
flight at most; whatever must see it done first (a rebalance, an abort, shutdown, a
definition catch-up, a refused record's isolation) waits for it. A commit that fails
aborts both: neither working state was merged, so the rewind to the committed offsets
decides all their inputs again.

Errors fall into a few classes (:mod:`foldflow.processors.runtime.errors`): retriable (the call is
repeated), abortable (abort, seek every input partition back to its committed offset,
drop the working state: the inputs are decided again), fenced and fatal (the loop ends;
see :mod:`foldflow.processors.runtime.bootstrap`). Partitions revoked: the open transaction is
committed first; lost: it is aborted. A partition is restored from
``wf.orchestrator-state`` when assigned, after the group's committed offsets are stable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from foldflow.observability.metrics import (
    ACTIVE_WORKFLOWS,
    DLQ_MESSAGES,
    MESSAGE_HANDLING_SECONDS,
    MESSAGES_HANDLED,
    TRANSACTION_ABORTS,
    TRANSACTION_COMMIT_SECONDS,
    TRANSACTION_COMMITS,
    TRANSACTION_INPUTS,
    TRANSACTION_SECONDS,
    child,
)
from foldflow.observability.tracing import (
    TRACE_HEADERS,
    extract_context,
    forwarded,
    header_list,
    inject_headers,
)
from foldflow.processors.runtime.definitions_cache import DefinitionsCache
from foldflow.processors.runtime.effects import OutputRecord, build_records
from foldflow.processors.runtime.errors import (
    ErrorClass,
    FatalError,
    Fenced,
    Stopped,
    TransactionAborted,
    classify,
    kafka_error,
    record_rejected,
)
from foldflow.processors.runtime.firing import fire_timer_command
from foldflow.processors.runtime.handling import Current, InputHandler, InputRecord, Outcome
from foldflow.processors.runtime.kafka import (
    consumer_config,
    group_id,
    guard_seconds,
    transactional_producer_config,
)
from foldflow.processors.runtime.records import DefinitionTable, definition_key, definition_record
from foldflow.processors.runtime.recovery import StateReader
from foldflow.processors.runtime.store import FINISHED, PartitionState, Store, Transaction
from foldflow.processors.runtime.telemetry import LagGauge, TaskTypes, record_plan
from foldflow.processors.runtime.timers import TimerIndex
from foldflow.processors.runtime.watchdog import Watchdog
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["HANDLER", "Orchestrator", "group_commit_interval"]

HANDLER = "orchestrator"
log = logging.getLogger(__name__)
_tracer = trace.get_tracer("foldflow.orchestrator")

#: How long a fatal error waits for librdkafka's fatal error that says why, raised by a
#: producer poll (a fence, seen by a produce call a moment before librdkafka queued it,
#: would otherwise exit as fatal).
_FATAL_EVENT_WAIT_S = 1.0
#: Records taken from the consumer per turn. The commit interval is checked between
#: turns, so under a backlog a transaction holds a whole turn's inputs (fewer commits,
#: each a few broker round trips and a marker per partition touched), and under light
#: load it commits every interval.
BATCH_MAX = 250
HOUSEKEEPING_S = 0.5  # the longest sleep: definitions, gauges, retention
#: Group commit: while the loop is saturated (busy this share of its time or more: it
#: finds inputs waiting whenever it polls), the commit interval stretches to this many
#: times the recent commit duration, so at most about a fifth of the time goes to
#: commits...
SATURATED = 0.85
COMMIT_SHARE = 4.0
#: ... but never beyond this many times the configured interval (the added latency).
INTERVAL_STRETCH_MAX = 5.0
GAUGES_S = 5.0
ADMIN_BACKOFF_MAX_S = 5.0
#: The longest poll while a commit is in flight: its end begins the next transaction.
COMMIT_POLL_S = 0.001

EnsureTopics = Callable[[tuple[str, ...]], None]


class Orchestrator:
    """The transactional loop of one orchestrator instance (see the module docstring).

    Built by :func:`foldflow.processors.runtime.bootstrap.build`; :meth:`run` blocks until
    :meth:`stop` (returns normally after the last commit) or until the producer is
    fenced or a fatal error happens (raises :class:`Fenced` / :class:`FatalError`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        consumer_factory: Callable[[dict[str, Any]], Consumer],
        producer_factory: Callable[[dict[str, Any]], Producer],
        reader: StateReader,
        definitions: DefinitionsCache,
        table: DefinitionTable,
        ensure_task_topics: EnsureTopics,
        watchdog: Watchdog,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topology = Topology.of(settings)
        self.inputs = (self.topology.commands, self.topology.results)
        self.consumer = consumer_factory(consumer_config(settings))
        self._producer_fatal: KafkaError | None = None
        self.producer = producer_factory({
            **transactional_producer_config(settings),
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
        })  # fmt: skip
        self.reader = reader
        self.definitions = definitions
        self.table = table
        self.ensure_task_topics = ensure_task_topics
        self.watchdog = watchdog
        self.on_ready = on_ready
        self.store = Store(definitions=table,
                           finished_retention_s=settings.orchestrator_finished_retention_s)
        self.timers = TimerIndex()
        self.handler = InputHandler(
            topology=self.topology, definitions=table,
            max_message_bytes=settings.orchestrator_max_message_bytes,
            lookup=self._current, resolve=self._resolve,
        )  # fmt: skip
        self.txn: Transaction | None = None
        self.committing: _InFlight | None = None
        self._committer = ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix="orchestrator-commit")  # fmt: skip
        self.min_interval_s = settings.orchestrator_commit_interval_ms / 1000
        self.interval_s = self.min_interval_s
        self._commit_s = 0.0  # moving average of how long a commit takes
        self._busy = 0.0  # moving average of the share of time the loop is not idle
        self._idle_s = 0.0  # waited in poll since the last commit
        self._cycle_began = time.monotonic()
        self.max_inputs = settings.orchestrator_commit_max_inputs
        self.call_timeout_s = settings.orchestrator_session_timeout_s
        self.guard_s = guard_seconds(settings)
        self._stopping = threading.Event()
        self._ready = False
        self._dead = False  # fenced or failed: callbacks only drop state now
        self._revocations = 0  # bumped by every revoke or loss
        self._callback_error: BaseException | None = None
        self._owned: set[int] = set()
        self._retained: dict[int, PartitionState] = {}
        #: (topic, partition) -> where consumption started after the assignment
        self._start: dict[tuple[str, int], int] = {}
        #: input partitions whose records up to an offset go one per transaction: a
        #: transaction over them was aborted by a record the broker refused
        self._suspect: dict[tuple[str, int], int] = {}
        #: inputs found poison that way, sent to wf.dlq when read again
        self._poison: set[tuple[str, int, int]] = set()
        self._rejections: list[KafkaError] = []
        self._task_topics: set[str] = set()
        self._task_types = TaskTypes()
        self._lag = LagGauge(group_id(settings))
        self._admin_backoff = 0.2
        self._next_housekeeping = 0.0
        self._next_gauges = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish (any thread, e.g. a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        """Run until :meth:`stop`; commit the open transaction and leave the group."""
        self._call("init_transactions", lambda: self.producer.init_transactions(
            self.call_timeout_s))  # fmt: skip
        self.definitions.start()
        self.consumer.subscribe(
            list(self.inputs), on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )  # fmt: skip
        log.info("orchestrator started", extra={"group": group_id(self.settings)})
        try:
            while not self._stopping.is_set():
                self._turn()
            self._commit("shutdown")
        except Stopped as stopped:  # during an assignment: nothing was open
            log.info("%s", stopped)
        except (Fenced, FatalError):
            self._dead = True
            raise
        finally:
            self._close()

    def _close(self) -> None:
        self._committer.shutdown(wait=True)  # a commit in flight ends first
        try:
            self.consumer.close()  # leaves the group (revoke: nothing is open any more)
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)
        if not self._dead:
            self.producer.flush(self.call_timeout_s)
        self.reader.close()
        self.definitions.close()

    # --- one turn ------------------------------------------------------------------------

    def _turn(self) -> None:
        revocations = self._revocations
        waited = time.monotonic()
        first = self.consumer.poll(self._wait_s())
        self._idle_s += time.monotonic() - waited
        batch: list[Message] = []
        if first is not None:
            batch = [first, *self.consumer.consume(num_messages=BATCH_MAX - 1, timeout=0)]
        self._raise_callback_error()
        if self._revocations != revocations and batch:
            # Some may have been fetched before partitions were revoked: read every owned
            # partition again from its committed offset. (After an assignment alone, all
            # records are of the new one: nothing was assigned before it.)
            batch = []
            self._rewind(assign=True)
        self._poll_producer(0)
        try:
            if self.committing is not None and self.committing.future.done():
                self._settle()
            for msg in batch:
                error = msg.error()
                if error is not None:
                    self._consumer_error(error)
                    continue
                self._input(msg)
                if self._must_commit():
                    self._commit("inputs", wait=bool(self._suspect))
            self._fire_due_timers()
            if self._due_to_commit():
                self._commit("interval", wait=False)
        except TransactionAborted:
            pass  # rewound: the rest of the batch is read again
        self._housekeeping()

    def _wait_s(self) -> float:
        now = time.monotonic()
        wait = HOUSEKEEPING_S
        if self.committing is not None:  # the open transaction commits after that one
            wait = min(wait, COMMIT_POLL_S)
        elif self.txn is not None:
            wait = min(wait, self.txn.started + self.interval_s - now)
        due = self.timers.next_due()
        if due is not None:
            wait = min(wait, (due - time.time() * 1000) / 1000)
        return max(0.0, wait)

    def _due_to_commit(self) -> bool:
        """Between turns: the transaction is as old as the commit interval (or full), and
        the previous commit is done (until then it collects inputs: group commit)."""
        txn = self.txn
        if self.committing is not None and not self.committing.future.done():
            return False
        return txn is not None and (
            self._must_commit() or time.monotonic() - txn.started >= self.interval_s
        )

    def _must_commit(self) -> bool:
        """Within a turn: the transaction is full, or inputs are isolated one by one."""
        txn = self.txn
        return txn is not None and (
            txn.inputs >= self.max_inputs or (bool(self._suspect) and txn.inputs > 0)
        )

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise FatalError(f"consumer: {error}")
        log.warning("consumer: %s", error)

    # --- inputs --------------------------------------------------------------------------

    def _input(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        if partition not in self._owned:
            return
        suspect_end = self._suspect.get((topic, partition))
        if suspect_end is not None and self.txn is not None and self.txn.inputs > 0:
            self._commit("isolating a refused record")  # one input per transaction
        started = time.perf_counter()
        record = InputRecord(topic, partition, offset, msg.key(), msg.value(),
                             header_list(msg.headers()))  # fmt: skip
        if (topic, partition, offset) in self._poison:
            outcome = self.handler.dead_letter(record, _Refused(self._poison_reason),
                                               kind="Unproducible")  # fmt: skip
        elif (carried := forwarded(_tracer, record.headers)) is not None:
            # nobody sees the spans: the input's context goes on as it came, no span of ours
            as_came = _trace_headers(record.headers)
            with trace.use_span(carried, end_on_exit=False):  # for the logs' trace ids
                outcome = self.handler.handle(record, trace_headers=lambda: as_came)
        else:
            span = _tracer.start_span(
                "orchestrator handle", context=extract_context(record.headers),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.destination.name": topic,
                            "messaging.kafka.partition": partition,
                            "messaging.kafka.offset": offset},
            )  # fmt: skip
            with trace.use_span(span, end_on_exit=True):
                outcome = self.handler.handle(record, trace_headers=inject_headers)
                if outcome.plan is not None:
                    span.set_attribute("foldflow.workflow_id", outcome.plan.state.workflow_id)
        self._apply(outcome, record)
        if suspect_end is not None and offset + 1 >= suspect_end:
            del self._suspect[(topic, partition)]
        child(MESSAGES_HANDLED, topic, HANDLER, outcome.label).inc()
        child(MESSAGE_HANDLING_SECONDS, topic, HANDLER).observe(time.perf_counter() - started)

    def _apply(self, outcome: Outcome, record: InputRecord) -> None:
        """Produce an input's records in the open transaction and note its changes."""
        if outcome.task_types:
            self._ensure_task_topics(outcome.task_types)
        txn = self._begin()
        for out in outcome.records:
            self._produce(out)
        change = outcome.change
        if change is not None:
            txn.change(change)
            txn.traces[change.state.workflow_id] = _traceparent(outcome.trace)
        if outcome.plan is not None:
            txn.plans.append(outcome.plan)
        if outcome.dead_letter_kind is not None:
            txn.dead_letters.append((record.topic, outcome.dead_letter_kind))
        txn.advance(record.topic, record.partition, record.offset)
        txn.inputs += 1

    def _current(self, workflow_id: str, partition: int) -> Current | object | None:
        flight = self.committing
        for txn in (self.txn, flight.txn if flight is not None else None):
            if txn is not None:
                change = txn.changes.get(workflow_id)
                if change is not None:
                    return Current(change.state, change.offsets)
        found = self.store.lookup(workflow_id, partition)
        if found is FINISHED or found is None:
            return found
        return Current(found.state, found.offsets)  # type: ignore[union-attr]

    def _resolve(self, tenant: str, name: str, version: int | None) -> Any:
        found = self.definitions.get(tenant, name, version)
        if found is None:
            # A catch-up may take seconds: commit first, the transaction must not age.
            self._commit("definition catch-up")
            found = self.definitions.resolve(tenant, name, version)
        return found

    def _ensure_task_topics(self, task_types: frozenset[str]) -> None:
        wanted = tuple(sorted(t for t in task_types
                              if self.topology.task(t) not in self._task_topics))  # fmt: skip
        if not wanted:
            return
        try:
            self.ensure_task_topics(wanted)
        except Exception as exc:  # the admin API timed out, the broker is away: try again
            log.error("cannot create the task topics of %s (%s); retrying in %.1fs",
                      ", ".join(wanted), exc, self._admin_backoff)  # fmt: skip
            self._abort("task topics")  # and rewind: the input is read again
            time.sleep(self._admin_backoff)
            self._admin_backoff = min(self._admin_backoff * 2, ADMIN_BACKOFF_MAX_S)
            raise TransactionAborted("task topics could not be created") from exc
        self._admin_backoff = 0.2
        self._task_topics.update(self.topology.task(t) for t in wanted)

    # --- timers --------------------------------------------------------------------------

    def _fire_due_timers(self) -> None:
        now_ms = int(time.time() * 1000)
        due = self.timers.pop_due(now_ms, owned=self._owned)
        if not due:
            return
        txn = self._begin()
        txn.fired.extend(due)
        for timer in due:
            trace = self.timers.trace(timer.workflow_id)
            parent = extract_context([("traceparent", trace)] if trace else None)
            with _tracer.start_as_current_span(
                "orchestrator timer", context=parent, kind=SpanKind.PRODUCER,
                attributes={"foldflow.workflow_id": timer.workflow_id,
                            "foldflow.timer": timer.timer_id},
            ):  # fmt: skip
                command = fire_timer_command(timer, now=now_ms)
                (record,) = build_records([(self.topology.commands, command)],
                                          trace_headers=inject_headers(),
                                          limit=self.settings.orchestrator_max_message_bytes)
                self._produce(record, partition=timer.partition)

    # --- the transaction -----------------------------------------------------------------

    def _begin(self) -> Transaction:
        if self.txn is None:
            begun = self.committing is None  # else once that commit returns (_settle)
            if begun:
                self._call("begin_transaction", self.producer.begin_transaction)
            self.txn = Transaction(started=time.monotonic(), begun=begun)
        return self.txn

    def _produce(self, record: OutputRecord, *, partition: int | None = None) -> None:
        txn = self.txn
        if txn is not None and not txn.begun:
            txn.pending.append((record, partition))
            return
        part = partition if partition is not None else record.partition
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        while True:
            try:
                if part is None:
                    self.producer.produce(record.topic, record.value, record.key,
                                          headers=headers)  # fmt: skip
                else:
                    self.producer.produce(record.topic, record.value, record.key,
                                          partition=part, headers=headers)  # fmt: skip
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                self._poll_producer(0.05)
            except KafkaException as exc:
                self._failed("produce", exc)

    def _on_delivery(self, error: KafkaError | None, _msg: Any) -> None:
        """Delivery reports (errors only: ``delivery.report.only.error``)."""
        if error is not None and record_rejected(error):
            self._rejections.append(error)

    def _poll_producer(self, timeout: float) -> None:
        """Serve the producer's events. confluent-kafka raises librdkafka's fatal error (a
        fence) from ``poll``, never through ``error_cb``: it is classified like a failed
        call's, and kept to explain the calls that fail after it with a mere "fatal
        error"."""
        try:
            self.producer.poll(timeout)
        except KafkaException as exc:
            self._producer_fatal = kafka_error(exc)
            self._failed("poll", exc)

    def _commit(self, reason: str, *, wait: bool = True) -> None:
        """Commit the open transaction, if any: steps 1 here, 2 and 3 on the helper thread
        (the previous commit done first); ``wait``: until no commit is in flight."""
        self._settle()
        txn = self.txn
        if txn is None:
            return
        self._produce_state(txn)
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(txn.positions.items())]
        metadata = self.consumer.consumer_group_metadata() if offsets else None
        self.txn = None
        self.committing = _InFlight(txn, reason,
                                    self._committer.submit(self._finish, offsets, metadata))
        if wait:
            self._settle()

    def _finish(self, offsets: list[TopicPartition], metadata: object) -> float:
        """Steps 2 and 3 of a commit (the helper thread): their seconds, or
        :class:`_CommitFailed` saying which call failed."""
        began = time.monotonic()
        what = "send_offsets_to_transaction"
        try:
            if offsets:
                self._attempts(what, lambda: self.producer.send_offsets_to_transaction(
                    offsets, metadata, self.call_timeout_s))  # fmt: skip
            what = "commit_transaction"
            self._attempts(what, lambda: self.producer.commit_transaction(self.call_timeout_s))
        except KafkaException as exc:
            raise _CommitFailed(what, exc) from exc
        return time.monotonic() - began

    def _settle(self) -> None:
        """Wait for the commit in flight, if any; merge it (step 4) and begin the
        transaction stacked on it, or abort both if it failed (raises then)."""
        flight = self.committing
        if flight is None:
            return
        try:
            commit_s = flight.future.result()
        except _CommitFailed as failed:
            flight.failed = True
            self._failed(failed.what, failed.cause)  # raises; an abort drops both
        self.committing = None
        TRANSACTION_COMMIT_SECONDS.observe(commit_s)
        self._stretch_interval(commit_s)
        self._merge(flight.txn)
        log.debug("committed %d inputs (%s)", flight.txn.inputs, flight.reason)
        txn = self.txn
        if txn is not None and not txn.begun:
            self._call("begin_transaction", self.producer.begin_transaction)
            txn.begun = True
            pending, txn.pending = txn.pending, []
            for record, partition in pending:
                self._produce(record, partition=partition)

    def _stretch_interval(self, commit_s: float) -> None:
        """Group commit: a commit costs several broker round trips, and the broker writes a
        marker to every partition the transaction touched. While the loop has idle time the
        configured interval holds (latency); once it is saturated and commits are slow,
        transactions collect inputs for longer, so fewer, larger commits serve more inputs
        (and the CPU they would cost Kafka and this process goes to deciding)."""
        now = time.monotonic()
        cycle = max(now - self._cycle_began, 1e-6)
        self._busy = 0.8 * self._busy + 0.2 * max(0.0, 1 - self._idle_s / cycle)
        self._idle_s, self._cycle_began = 0.0, now
        self._commit_s = 0.8 * self._commit_s + 0.2 * commit_s
        self.interval_s = group_commit_interval(self.min_interval_s, busy=self._busy,
                                                commit_s=self._commit_s)  # fmt: skip

    def _produce_state(self, txn: Transaction) -> None:
        """Step 1 of the commit: definition records first, then one state record each."""
        state_topic = self.topology.orchestrator_state
        for change in txn.changes.values():
            part = self.store.partitions.get(change.partition)
            digest = change.digest
            if (digest is None or part is None or digest in part.definitions
                    or (change.partition, digest) in txn.definitions):  # fmt: skip
                continue
            text = self.table.get(digest)
            if text is not None:
                txn.definitions.add((change.partition, digest))
                self._produce(OutputRecord(state_topic, definition_key(digest),
                                           definition_record(text), ()),
                              partition=change.partition)  # fmt: skip
        for wf, change in txn.changes.items():
            self._produce(OutputRecord(state_topic, wf.encode(), change.record, ()),
                          partition=change.partition)  # fmt: skip

    def _merge(self, txn: Transaction) -> None:
        """Step 4 of the commit: the broker committed, the store and timers follow."""
        now = time.monotonic()
        for change in self.store.merge(txn, now=now):
            wf = change.state.workflow_id
            self.timers.update(wf, partition=change.partition,
                               timers={} if change.terminal else change.state.timers,
                               trace=txn.traces.get(wf))  # fmt: skip
        for plan in txn.plans:
            record_plan(plan, self._task_types)
        for topic, kind in txn.dead_letters:
            DLQ_MESSAGES.labels(topic=topic, reason_kind=kind).inc()
        TRANSACTION_COMMITS.inc()
        TRANSACTION_SECONDS.observe(now - txn.started)
        TRANSACTION_INPUTS.observe(txn.inputs)

    def _abort(self, reason: str, *, force: bool = False) -> None:
        """Abort the open transaction (``force``: the producer has one open even if none is
        known here), drop the working state and rewind every input partition to its
        committed offset: whatever was read since is decided again. A commit still in
        flight ends first (and aborts everything itself if it fails); one that failed is
        aborted with the transaction stacked on it."""
        if self.committing is not None and not self.committing.failed:
            self._settle()
        flight, self.committing = self.committing, None
        txn, self.txn = self.txn, None
        if (txn is not None and txn.begun) or flight is not None or force:
            self._call("abort_transaction",
                       lambda: self.producer.abort_transaction(self.call_timeout_s))  # fmt: skip
        TRANSACTION_ABORTS.labels(reason=reason).inc()
        dropped = [t for t in (flight.txn if flight is not None else None, txn) if t is not None]
        for t in dropped:
            self.timers.rearm(t.fired, at=int(time.time() * 1000))
        if self._rejections and dropped:
            self._isolate(dropped[0])  # the one whose records went to the broker
        self._rejections.clear()
        inputs = sum(t.inputs for t in dropped)
        stacked = txn.inputs if flight is not None and txn is not None else 0
        self._rewind()
        log.warning("transaction aborted (%s): %d inputs will be read again (%d of them "
                    "decided while it committed)", reason, inputs, stacked)  # fmt: skip

    def _isolate(self, txn: Transaction) -> None:
        """A record of ``txn`` was refused: its inputs go one per transaction from now on,
        and an input refused alone is poison (parked on wf.dlq when read again)."""
        for key, end in txn.positions.items():
            self._suspect[key] = max(end, self._suspect.get(key, 0))
        if txn.inputs == 1 and len(txn.positions) == 1:
            (topic, partition), end = next(iter(txn.positions.items()))
            self._poison.add((topic, partition, end - 1))
            self._poison_reason = f"the broker refused a record it produced: {self._rejections[0]}"

    def _rewind(self, *, assign: bool = False) -> None:
        """Send every owned input partition back to its committed offset (``assign``: by
        assigning again, for partitions whose fetch may not have started yet)."""
        positions = []
        for topic, partition in sorted(self._start):
            position = self.store.position(topic, partition)
            if position is None:
                position = self._start[(topic, partition)]
            positions.append(TopicPartition(topic, partition, position))
        if assign:
            self.consumer.assign(positions)
            return
        for tp in positions:
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                log.warning("cannot rewind %s[%d] to %d: %s", tp.topic, tp.partition, tp.offset,
                            exc)  # fmt: skip

    def _call(self, what: str, call: Callable[[], object]) -> None:
        """A transactional producer call: retried while retriable, else classified."""
        try:
            self._attempts(what, call)
        except KafkaException as exc:
            self._failed(what, exc)

    def _attempts(self, what: str, call: Callable[[], object]) -> None:
        """Run ``call`` again while it fails retriably; raise any other failure (touches no
        state of the loop: the helper thread runs commits with it).

        Each attempt runs under the watchdog: a call that outlives ``guard_s`` (librdkafka
        #5456) restarts the process in place.
        """
        delay = 0.1
        while True:
            try:
                with self.watchdog.guard(what, self.guard_s):
                    call()
                return
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is None or classify(error) is not ErrorClass.RETRIABLE:
                    raise
                log.warning("%s: %s; retrying in %.1fs", what, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _failed(self, what: str, exc: KafkaException) -> None:
        """Handle a non-retriable error of ``what``; always raises."""
        error = kafka_error(exc)
        kind = classify(error) if error is not None else ErrorClass.FATAL
        if kind is ErrorClass.FATAL:  # serve the fatal error that says why: a call can fail
            deadline = time.monotonic() + _FATAL_EVENT_WAIT_S  # before librdkafka queued it
            while self._producer_fatal is None and time.monotonic() < deadline:
                try:
                    self.producer.poll(0.05)
                except KafkaException as raised:  # see _poll_producer
                    self._producer_fatal = kafka_error(raised)
        fatal = self._producer_fatal
        if kind is ErrorClass.FATAL and fatal is not None and classify(fatal) is ErrorClass.FENCED:
            kind, error = ErrorClass.FENCED, fatal  # e.g. a produce refused after the fence
        if kind is ErrorClass.FENCED:
            self._dead = True
            raise Fenced(f"{what}: {error}") from exc
        if kind is ErrorClass.ABORTABLE and what not in ("abort_transaction", "init_transactions"):
            log.warning("%s failed: %s", what, error)
            self._abort(_abort_reason(what, error), force=True)
            raise TransactionAborted(f"{what}: {error}") from exc
        self._dead = True
        raise FatalError(f"{what}: {exc}") from exc

    # --- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        try:
            self._assign([tp for tp in partitions if tp.topic in self.inputs])
        except BaseException as exc:  # re-raised by the loop; the assignment is unusable
            self._callback_error = exc

    def _assign(self, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        committed = self._committed(partitions)
        numbers = sorted({tp.partition for tp in partitions})
        restore: list[int] = []
        for p in numbers:
            kept = self._retained.pop(p, None)
            if kept is not None and all(
                committed.get((t, p)) == kept.positions.get(t) for t in self.inputs
            ):
                self.store.install(kept)  # nobody else committed anything for it
                self.timers.resume_partition(p)
            else:
                self.timers.remove_partition(p)
                restore.append(p)
        for p in self._retained:
            self.timers.remove_partition(p)
        self._retained.clear()
        restored = self.reader.restore(restore, stopping=self._stopping.is_set)
        for p, part in restored.items():
            part.state.positions = {t: o for t in self.inputs
                                    if (o := committed.get((t, p))) is not None}  # fmt: skip
            self.store.install(part.state)
            self.timers.add_partition(part.timers, partition=p)
        self._start = {}
        assignment = []
        for tp in partitions:
            offset = committed.get((tp.topic, tp.partition))
            start = OFFSET_BEGINNING if offset is None else offset
            self._start[(tp.topic, tp.partition)] = start
            assignment.append(TopicPartition(tp.topic, tp.partition, start))
        self._owned = set(numbers)
        self._suspect.clear()
        self.consumer.assign(assignment)
        ACTIVE_WORKFLOWS.set(self.store.active())
        log.info(
            "recovered %d workflows on partitions %s, %d timers pending (%d partitions read "
            "from %s, %d records, in %.1fs)", self.store.active(), numbers,
            self.timers.pending_count(), len(restored), self.topology.orchestrator_state,
            sum(r.records for r in restored.values()), time.monotonic() - started,
        )  # fmt: skip
        if not self._ready:
            self._ready = True
            if self.on_ready is not None:
                self.on_ready()

    def _committed(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The group's committed offsets, once stable (no transaction pending on them)."""
        if not partitions:
            return {}
        while True:
            try:
                found = self.consumer.committed(
                    [TopicPartition(tp.topic, tp.partition) for tp in partitions],
                    timeout=self.call_timeout_s,
                )
                return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
            except KafkaException as exc:
                log.warning("reading the committed offsets: %s; retrying", exc)
                time.sleep(0.5)

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self._revocations += 1
        try:
            if not self._dead:
                with contextlib.suppress(TransactionAborted):
                    self._commit("revoke")
            self._release(partitions, keep=not self._dead)
        except BaseException as exc:
            self._callback_error = exc
            self._release(partitions, keep=False)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self._revocations += 1
        try:
            if not self._dead and (self.txn is not None or self.committing is not None):
                self._abort("partitions lost")
        except TransactionAborted:
            pass
        except BaseException as exc:
            self._callback_error = exc
        self._release(partitions, keep=False)
        for p in list(self._retained):
            self.timers.remove_partition(p)
        self._retained.clear()
        consumer.unassign()
        log.warning("partitions lost (the group moved on without this instance): %s",
                    sorted({tp.partition for tp in partitions}))  # fmt: skip

    def _release(self, partitions: Sequence[TopicPartition], *, keep: bool) -> None:
        released = {tp.partition for tp in partitions if tp.topic in self.inputs}
        self._start = {k: v for k, v in self._start.items() if k[1] not in released}
        for p in sorted(released):
            part = self.store.remove(p)
            self._owned.discard(p)
            if keep and part is not None:
                self._retained[p] = part  # its timers stay in the index until reassigned
            else:
                self.timers.remove_partition(p)
        self._suspect.clear()
        ACTIVE_WORKFLOWS.set(self.store.active())

    def _raise_callback_error(self) -> None:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error

    # --- housekeeping --------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_S
        self.definitions.poll()
        self.store.expire(now=now)
        if now >= self._next_gauges:
            self._next_gauges = now + GAUGES_S
            ACTIVE_WORKFLOWS.set(self.store.active())
            self._lag.publish(self._positions(), self._highwater)

    def _positions(self) -> list[tuple[str, int, int]]:
        out = []
        for topic in self.inputs:
            for p in sorted(self._owned):
                position = self.store.position(topic, p)
                for txn in (self.committing.txn if self.committing else None, self.txn):
                    if txn is not None:
                        position = txn.positions.get((topic, p), position)
                if position is None:
                    start = self._start.get((topic, p))
                    position = start if start is not None and start >= 0 else None
                if position is not None:
                    out.append((topic, p, position))
        return out

    def _highwater(self, topic: str, partition: int) -> int | None:
        try:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                             cached=True)  # fmt: skip
        except KafkaException:
            return None
        return int(high) if high is not None and high >= 0 else None

    _poison_reason = "the broker refused a record this input produced"


def group_commit_interval(min_interval_s: float, *, busy: float, commit_s: float) -> float:
    """The commit interval for a loop ``busy`` (0..1) of its time whose commits take
    ``commit_s``: the configured one unless saturated, else stretched (see
    :data:`SATURATED`)."""
    if busy < SATURATED:
        return min_interval_s
    return min(min_interval_s * INTERVAL_STRETCH_MAX, max(min_interval_s, COMMIT_SHARE * commit_s))


@dataclass
class _InFlight:
    """A transaction whose commit runs on the helper thread (its seconds, or
    :class:`_CommitFailed`)."""

    txn: Transaction
    reason: str
    future: Future[float]
    failed: bool = False  # its commit failed: an abort drops it


class _CommitFailed(Exception):
    """A commit's ``send_offsets_to_transaction`` or ``commit_transaction`` failed."""

    def __init__(self, what: str, cause: KafkaException) -> None:
        super().__init__(f"{what}: {cause}")
        self.what, self.cause = what, cause


class _Refused(Exception):
    """Why a poison input is parked: the broker refused a record it produced."""


def _trace_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The trace context headers among ``headers``."""
    return [h for h in headers if h[0] in TRACE_HEADERS]


def _traceparent(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The ``traceparent`` of some headers (all a timer needs to fire under their trace)."""
    return next((value for name, value in headers if name == "traceparent"), None)


def _abort_reason(what: str, error: KafkaError | None) -> str:
    """A short label for ``foldflow_transaction_aborts_total``."""
    if error is None:
        return what
    name = error.name().lower().lstrip("_")
    return f"{what}:{name}"
