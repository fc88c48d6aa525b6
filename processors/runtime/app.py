"""The orchestrator as a faust-streaming app (DESIGN §5, §13).

:func:`create_app` builds everything from one :class:`Settings`; there are no module-level
apps, so every test and process gets its own. One agent (``concurrency=1``, DESIGN §13)
reads ``wf.commands`` and ``wf.results`` (co-partitioned) and keeps each workflow's state
in the ``workflows`` table (raw bytes, changelog plain ``compact``). For each record the
:class:`~processors.runtime.runner.Orchestrator` decides, produces and waits for the acks; only
then is the new state assigned to the table. A timer fires due workflow timers through
``wf.commands``; the timer index is rebuilt whenever table recovery completes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.types import TP
from mode import Service

from foldflow.observability.metrics import ACTIVE_WORKFLOWS
from foldflow.settings import Settings
from foldflow.topics import Topology
from processors.decider.state import ACTIVE_STATUSES, state_from_bytes
from processors.runtime.catchup import (
    fold_events,
    is_marker,
    marker_key,
    marker_offset,
    marker_value,
)
from processors.runtime.definitions_cache import DefinitionsCache
from processors.runtime.firing import TimerFirer
from processors.runtime.holes import HoleReader, InputOrder
from processors.runtime.runner import InputRecord, Orchestrator
from processors.runtime.stored import Stored
from processors.runtime.telemetry import LagGauge
from processors.runtime.timers import TimerIndex, partition_for
from producers import Publisher
from schemas.codec import CodecError, decode

__all__ = ["TABLE_NAME", "TIMER_INTERVAL_S", "Resources", "app_id", "create_app"]

log = logging.getLogger(__name__)

TABLE_NAME = "workflows"
TIMER_INTERVAL_S = 0.25
BATCH_MAX = 500
BATCH_WITHIN_S = 0.005
GAUGE_INTERVAL_S = 5.0
STALL_CHECK_S = 1.0
CATCH_UP_CHUNK = 10_000  # wf.events records read per request while catching up
RETRY_MIN_S = 0.2  # backoff of a batch whose handling raised
RETRY_MAX_S = 5.0


def app_id(settings: Settings) -> str:
    """The faust app id: the consumer group and the changelog topics' prefix."""
    return f"{settings.topic_prefix}foldflow-orchestrator"


class Resources(Service):
    """The clients the orchestrator owns besides faust's: started and stopped with the app."""

    def __init__(
        self, *, definitions: DefinitionsCache, publisher: Publisher, holes: HoleReader, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.definitions = definitions
        self.publisher = publisher
        self.holes = holes

    async def on_start(self) -> None:
        """Start reading ``wf.definitions``."""
        await self.definitions.start()

    async def on_stop(self) -> None:
        """Stop the definitions reader, flush and close the publisher and the hole reader."""
        await self.definitions.stop()
        await asyncio.to_thread(self.publisher.close)
        await asyncio.to_thread(self.holes.close)


def _brokers(settings: Settings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")]


def _headers(raw: Any) -> list[tuple[str, bytes | str | None]]:
    if raw is None:
        return []
    items: Iterable[tuple[str, Any]] = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v) for k, v in items]


def _record(msg: Any) -> InputRecord:
    return InputRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=_headers(msg.headers),
    )


def create_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    on_ready: Callable[[], None] | None = None,
) -> faust.App:
    """Build the orchestrator app for ``settings`` (does not start it).

    ``on_ready`` runs once, when table recovery first completed and the agent is about to
    consume (``foldflow run orchestrator`` starts its ``/metrics`` server there, which is
    the readiness signal of ``foldflow up``).
    """
    topology = Topology.of(settings)
    # faust's data directory (tables of the memory store keep nothing there), per instance
    datadir = settings.state_dir / "orchestrator" / (settings.instance_id or "default")
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings),
        broker=_brokers(settings),
        store=settings.orchestrator_store,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.orchestrator_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.orchestrator_session_timeout_s / 4),
        broker_commit_interval=1.0,
        producer_acks=-1,
        topic_disable_leader=True,
        web_enabled=False,
    )
    publisher = publisher or Publisher(
        settings,
        source="orchestrator",
        # librdkafka's log lines through logging (JSON); no linger: every batch waits for
        # its acks anyway, so lingering only adds to each batch's wait (30 → 21 ms here)
        config={"logger": logging.getLogger("librdkafka"), "linger.ms": 0},
    )
    definitions = DefinitionsCache(settings)
    index = TimerIndex()
    orchestrator = Orchestrator(
        settings, publisher=publisher, definitions=definitions, index=index
    )
    firer = TimerFirer(
        publisher=publisher, topology=topology, index=index, traces=orchestrator.timer_traces
    )
    holes = HoleReader(settings, group=app_id(settings))
    app.add_dependency(Resources(definitions=definitions, publisher=publisher, holes=holes))

    # bytes key/value types make faust pick the raw serializer for the table and its
    # changelog (a Schema given to a Table is mutated to the types' serializers).
    table = app.Table(
        TABLE_NAME, default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    inputs = app.topic(
        topology.commands,
        topology.results,
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
    )

    lag = LagGauge(app_id(settings))

    def highwater(topic: str, partition: int) -> int | None:
        hw = app.consumer.highwater(TP(topic, partition))
        return int(hw) if hw is not None else None

    def owned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topology.commands}

    def load(record: InputRecord) -> bytes | None:
        return table.get(record.key or b"")  # the memory store needs no current event

    def owns(topic: str, partition: int) -> bool:
        return TP(topic, partition) in app.consumer.assignment()

    def owned(record: InputRecord) -> bool:
        return owns(record.topic, record.partition)

    def store(partition: int, key: bytes, value: bytes) -> None:
        # Written to the record's own changelog partition (not the current event's,
        # which is the batch's last): a new value, never mutated.
        table.data[key] = value
        table.send_changelog(partition, key, value)

    def store_marker(partition: int, end: int) -> None:
        key = marker_key(partition)
        if end > (marker_offset(table.data.get(key)) or 0):
            store(partition, key, marker_value(end))

    async def apply_and_store(records: list[InputRecord]) -> None:
        for record, value in await orchestrator.handle_batch(records, load):
            store(record.partition, record.key or b"", value)
        # after the values: the marker says their events are covered (processors/catchup.py)
        for partition, end in orchestrator.take_events_end().items():
            if owns(topology.commands, partition):
                store_marker(partition, end)

    async def handle_until_stored(records: list[InputRecord]) -> None:
        """Apply a batch, retrying it until it is stored: it must never escape unapplied.

        An exception out of the agent body does not just restart the agent: faust's
        take_events acks the batch in its ``finally``, so faust commits the offsets of
        inputs that were never applied, silently (DESIGN §11). A retry is safe: nothing
        of the failed attempt was stored, and what it published is re-published
        identically (the decider is deterministic); records already stored are
        recognised by their offsets and skipped.
        """
        delay = RETRY_MIN_S
        while True:
            try:
                await apply_and_store(records)
                return
            except Exception:
                log.exception(
                    "handling a batch of %d inputs failed; retrying it in %.1fs",
                    len(records), delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            records = [r for r in records if owned(r)]  # a revoked partition is not ours
            if not records:
                return

    async def start_offset(topic: str, partition: int) -> int:
        """Where the group resumes a partition: its committed offset, else the earliest."""
        tp = TP(topic, partition)
        known = [getattr(app.consumer, "_committed_offset", {}).get(tp),
                 await asyncio.to_thread(holes.committed, topic, partition)]  # fmt: skip
        committed = max((int(o) for o in known if o is not None and o > 0), default=None)
        if committed is not None:
            return committed
        return int((await app.consumer.earliest_offsets(tp))[tp])

    order = InputOrder(holes, owned=owns, start=start_offset)
    serial = asyncio.Lock()  # the agent's batches and the stall check's fills: one at a time

    async def filled_stored() -> None:
        """Let faust commit past the ranges read from the log, now that they are stored."""
        for topic, partition, start, end in order.take_filled():
            if owns(topic, partition):
                # faust's own gap bookkeeping (offsets that need no ack): without it, a hole
                # at the head of its acked offsets stops its commits for the partition
                await app.consumer._add_gap(  # type: ignore[attr-defined]
                    TP(topic, partition), start, end - 1
                )

    async def orchestrate(stream: faust.StreamT[bytes]) -> None:
        # Batches amortise the wait for the broker's acks; take_events acks (and so lets
        # faust commit) a batch's offsets only after this loop body is done with it.
        assert isinstance(stream, faust.Stream)  # StreamT does not declare take_events
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            records = [_record(event.message) for event in events]
            async with serial:
                await handle_until_stored(await order.in_order(records))
                await filled_stored()
            for record in records:
                lag.handled(record.topic, record.partition, record.offset)

    app.agent(inputs, name="orchestrate", concurrency=1)(orchestrate)

    ready = False

    async def catch_up(partition: int) -> None:
        """Fold the events on ``wf.events[partition]`` that the table does not cover yet."""
        topic = topology.events
        low, end = await asyncio.to_thread(holes.watermarks, topic, partition)
        start = marker_offset(table.data.get(marker_key(partition)))
        start = low if start is None else max(start, low)
        events = []
        while start < end:
            chunk = await asyncio.to_thread(
                holes.read, topic, partition, start, min(end, start + CATCH_UP_CHUNK)
            )
            for record in chunk:
                try:
                    events.append(decode(record.value))
                except CodecError:
                    log.exception("undecodable event at %s[%d]@%d", topic, partition,
                                  record.offset)  # fmt: skip
            start = chunk[-1].offset + 1 if chunk else min(end, start + CATCH_UP_CHUNK)
        changed = fold_events(table.data.get, events)
        for key, value in changed.items():
            store(partition, key, value)
        store_marker(partition, end)
        if changed:
            log.warning("caught up %d workflows of partition %d with %d events the table "
                        "did not cover", len(changed), partition, len(events))  # fmt: skip

    async def rewind_uncommitted(partition: int) -> None:
        """Send the consumer to the first offset of an input partition the group never
        committed. faust drops what its fetcher delivered while recovery held the flow, and
        its seek to the committed offsets that follows skips a partition with none, so the
        first records of a young partition were never delivered (every fresh start logged
        a hole at offset 0). This runs while the flow is still held."""
        for topic in (topology.commands, topology.results):
            if await asyncio.to_thread(holes.committed, topic, partition) is None:
                tp = TP(topic, partition)
                await app.consumer.seek(tp, int((await app.consumer.earliest_offsets(tp))[tp]))

    async def rebuild_index() -> None:
        owned = owned_partitions()
        async with serial:
            order.forget_revoked()
            orchestrator.take_events_end()  # stored, or of partitions no longer ours
            for partition in sorted(owned):
                await catch_up(partition)
                await rewind_uncommitted(partition)
        entries = []
        for key, value in table.data.items():
            if is_marker(key):
                continue
            partition = partition_for(key, settings.partitions)
            if partition in owned and value:
                try:
                    state = state_from_bytes(Stored.from_bytes(value).state)
                except ValueError:
                    log.exception("unreadable state of %r in the table", key)
                    continue
                entries.append(
                    (state.workflow_id, partition, state.timers, state.status in ACTIVE_STATUSES)
                )
        index.rebuild(entries)
        pending = {wf for wf, _, timers, _ in entries if timers}
        for wf in [wf for wf in orchestrator.timer_traces if wf not in pending]:
            del orchestrator.timer_traces[wf]  # moved to another instance or finished
        ACTIVE_WORKFLOWS.set(index.active_count(owned))
        log.info(
            "recovered %d workflows on partitions %s, %d timers pending",
            len(entries), sorted(owned), index.pending_count(),
        )
        nonlocal ready
        if not ready:
            ready = True
            if on_ready is not None:
                on_ready()

    table.on_recover(rebuild_index)

    last_gauge = 0.0

    async def fire_timers() -> None:
        nonlocal last_gauge
        if app.rebalancing:
            return
        owned = owned_partitions()
        await firer.fire_due(owned, now_ms=int(time.time() * 1000))
        if time.monotonic() - last_gauge >= GAUGE_INTERVAL_S:
            last_gauge = time.monotonic()
            ACTIVE_WORKFLOWS.set(index.active_count(owned))
            inputs_tps = {topology.commands, topology.results}
            assigned = [(tp.topic, tp.partition) for tp in app.consumer.assignment()
                        if tp.topic in inputs_tps]  # fmt: skip
            lag.publish(assigned, highwater)

    app.timer(interval=TIMER_INTERVAL_S, name="fire_timers")(fire_timers)

    async def fill_stalled() -> None:
        """Read what the consumer left behind on partitions where nothing comes."""
        if app.rebalancing:
            return
        ends = {(tp.topic, tp.partition): hw for tp in app.consumer.assignment()
                if tp.topic in (topology.commands, topology.results)
                and (hw := highwater(tp.topic, tp.partition)) is not None}  # fmt: skip
        async with serial:
            records = await order.stalled(ends)
            if records:
                await handle_until_stored(records)
                await filled_stored()

    app.timer(interval=STALL_CHECK_S, name="fill_stalled")(fill_stalled)
    return app
