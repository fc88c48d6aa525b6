"""One task type's consumer: poll ``wf.tasks.<type>``, run each command, publish its result,
commit in order. Driven by :class:`foldflow.workers.runtime.Worker`'s event loop.

Every call on the confluent-kafka ``Consumer`` (poll, pause, commit, close, and the
rebalance callbacks it runs) happens on one dedicated thread, so the consumer is never
used from two threads at once; the offset trackers it shares with the loop sit behind a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from foldflow.kafka import kafka_config
from foldflow.observability.metrics import (
    CONSUMER_LAG,
    MESSAGE_HANDLING_SECONDS,
    MESSAGES_HANDLED,
    child,
)
from foldflow.producers import Publisher
from foldflow.settings import Settings
from foldflow.topics import Topology
from foldflow.workers.handling import RecordHandler, Slots, Ticket
from foldflow.workers.offsets import PartitionOffsets
from foldflow.workers.registry import TaskRegistry

__all__ = ["TaskConsumer", "consumer_config"]

log = logging.getLogger("foldflow.worker")
T = TypeVar("T")

HANDLER = "worker"
_MAX_BATCH = 500
_LAG_EVERY_S = 5.0
#: Asynchronous commits go out at most this often (the final and revoke commits are
#: synchronous and immediate); a crash redelivers at most this much more.
_COMMIT_EVERY_S = 0.05
#: With every slot taken, wait this long for one to free before pausing the partitions:
#: short handlers free a slot within milliseconds, and a pause/resume cycle costs far
#: more (librdkafka drops the prefetched records and refetches after the resume).
_PAUSE_AFTER_S = 1.0


def consumer_config(settings: Settings, task_type: str) -> dict[str, Any]:
    """The librdkafka configuration of a task type's consumer (manual, in-order commits)."""
    return kafka_config(settings, {
        "group.id": Topology.of(settings).worker_group(task_type),
        "client.id": f"foldflow-worker-{task_type}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A task command produced before the group first joined must still run.
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # The orchestrator writes task commands in transactions: only committed ones run.
        "isolation.level": "read_committed",
        # Fetch requests the broker holds while a partition has nothing new: a partition
        # resumed (or newly fed) waits for the request in flight to return before it is
        # fetched, so the default 500 ms shows up as task latency.
        "fetch.wait.max.ms": 20,
        # A SIGKILLed worker's partitions move to the others once its session expires:
        # librdkafka's 45 s default outlived the default 30 s attempt timeout, so every
        # attempt dispatched meanwhile timed out (measured in docs/operations.md).
        "session.timeout.ms": settings.worker_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.worker_session_timeout_ms // 4),
    })


class TaskConsumer:
    """Serves one task type for a :class:`~foldflow.workers.runtime.Worker`."""

    def __init__(
        self,
        settings: Settings,
        task_type: str,
        registry: TaskRegistry,
        *,
        publisher: Publisher,
        pool: Executor,
        slots: Slots,
        stopping: asyncio.Event,
        poll_timeout: float = 0.5,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        topology = Topology.of(settings)
        self.task_type = task_type
        self.topic = topology.task(task_type)
        self.results_topic = topology.results
        self.group = topology.worker_group(task_type)
        self._slots = slots
        self._handler = RecordHandler(
            task_type, self.topic, self.results_topic, registry, publisher, pool, slots,
            group=self.group,
        )
        self._stopping = stopping
        self._poll_timeout = poll_timeout
        config = {**consumer_config(settings, task_type), **(overrides or {})}
        if config.get("group.protocol") == "consumer":  # KIP-848: the broker sets these
            for key in ("session.timeout.ms", "heartbeat.interval.ms"):
                config.pop(key, None)
        self._consumer = Consumer({**config, "on_commit": self._on_commit})
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kafka-{task_type}")
        self._lock = threading.Lock()
        self._offsets: dict[int, PartitionOffsets] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Whether this consumer's partitions are paused; None: not known (just assigned).
        self._paused: bool | None = False
        self._lag_at = 0.0
        self._commit_at = 0.0
        #: True once the group gave this consumer its (possibly empty) assignment.
        self.assigned = False

    # --- the consumer thread ------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _poll(self, free: int) -> list[Message]:
        now = time.monotonic()
        if now - self._commit_at >= _COMMIT_EVERY_S:
            self._commit_at = now
            self._commit(asynchronous=True)
        self._report_lag()
        if free <= 0:
            if self._paused is not True:
                self._consumer.pause(self._consumer.assignment())
                self._paused = True
            first = self._consumer.poll(min(self._poll_timeout, 0.1))
            return [] if first is None else [first]
        if self._paused is not False:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
        first = self._consumer.poll(self._poll_timeout)
        if first is None:
            return []
        rest = self._consumer.consume(min(free, _MAX_BATCH) - 1, 0) if free > 1 else []
        return [first, *rest]

    def _commit(self, *, asynchronous: bool, partitions: list[int] | None = None) -> None:
        with self._lock:
            trackers = {
                p: t for p, t in self._offsets.items() if partitions is None or p in partitions
            }
            points = {
                p: (t.commit_point if not asynchronous else t.to_commit())
                for p, t in trackers.items()
            }
        todo = [TopicPartition(self.topic, p, o) for p, o in points.items() if o is not None]
        if not todo:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=todo, asynchronous=True)
                done = todo
            else:
                answered = self._consumer.commit(offsets=todo, asynchronous=False)
                done = [tp for tp in answered if tp.error is None]
        except KafkaException as exc:
            log.warning(
                "offset commit failed; uncommitted work will be redelivered",
                extra={"topic": self.topic, "error": str(exc)},
            )
            return
        with self._lock:
            for tp in done:
                trackers[tp.partition].committed(tp.offset)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            log.warning(
                "async offset commit failed", extra={"topic": self.topic, "error": str(err)}
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._offsets[tp.partition] = PartitionOffsets()
        # librdkafka keeps a partition this consumer paused paused when it is assigned
        # again (its pause outlives a revoke or a loss): the next poll pauses or resumes
        # the whole assignment, whichever the slots call for.
        self._paused = None
        self.assigned = True
        log.info(
            "partitions assigned",
            extra={"topic": self.topic, "partitions": [tp.partition for tp in partitions]},
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [tp.partition for tp in partitions]
        self._commit(asynchronous=False, partitions=revoked)
        self._forget(revoked)
        log.info("partitions revoked", extra={"topic": self.topic, "partitions": revoked})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = [tp.partition for tp in partitions]
        self._forget(lost)
        log.warning("partitions lost", extra={"topic": self.topic, "partitions": lost})

    def _forget(self, partitions: list[int]) -> None:
        # In-flight attempts of these partitions still publish their results, but their
        # offsets are no longer ours to commit: the new owner gets them again.
        with self._lock:
            for p in partitions:
                self._offsets.pop(p, None)
                with contextlib.suppress(KeyError):
                    CONSUMER_LAG.remove(self.group, self.topic, str(p))

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < _LAG_EVERY_S:
            return
        self._lag_at = now
        try:
            positions = self._consumer.position(self._consumer.assignment())
            unread = [tp for tp in positions if tp.offset < 0]
            committed: dict[int, int] = {}
            if unread:  # nothing consumed there since the assignment: start from the commit
                committed = {
                    tp.partition: tp.offset for tp in self._consumer.committed(unread, 5.0)
                }
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue  # nothing fetched from this partition yet
                position = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
                if position < 0:  # no commit either: the whole log (low mark known or 0)
                    position = max(low, 0)
                lag = max(0, high - position)
                CONSUMER_LAG.labels(self.group, self.topic, str(tp.partition)).set(lag)
        except KafkaException as exc:
            log.debug("lag not available", extra={"error": str(exc)})

    # --- the event loop -----------------------------------------------------------------

    @property
    def assignment_size(self) -> int:
        """How many partitions this consumer owns now."""
        with self._lock:
            return len(self._offsets)

    def in_flight_tasks(self) -> list[asyncio.Task[None]]:
        """The attempts still running (or publishing)."""
        return [t for t in self._tasks if not t.done()]

    async def poll_loop(self) -> None:
        """Fetch and dispatch until the worker stops; never fetches past the budget."""
        await self._call(self._subscribe)
        while not self._stopping.is_set():
            if self._slots.free <= 0:  # pause only if no slot frees up soon
                await self._slots.wait_free(_PAUSE_AFTER_S)
            for msg in await self._call(self._poll, self._slots.free):
                self._dispatch(msg)

    async def commit_finished(self, *, final: bool = False) -> None:
        """Commit every partition's finished prefix (synchronously when ``final``)."""
        await self._call(lambda: self._commit(asynchronous=not final))

    async def close(self) -> None:
        """Commit what finished, leave the group and release the consumer thread."""
        try:
            await self._call(self._consumer.close)
        finally:
            self._io.shutdown(wait=True)

    def _dispatch(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error", extra={"topic": self.topic, "error": str(err)})
            return
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        with self._lock:
            tracker = self._offsets.get(partition)
            if tracker is None:
                tracker = self._offsets[partition] = PartitionOffsets()
            try:
                tracker.start(offset)
            except ValueError:  # the fetch position moved back (offset reset): start afresh
                tracker = self._offsets[partition] = PartitionOffsets()
                tracker.start(offset)
        ticket = self._slots.take()
        task = asyncio.create_task(self._handle(msg, tracker, offset, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(
        self, msg: Message, tracker: PartitionOffsets, offset: int, ticket: Ticket
    ) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            outcome = await self._handler.handle(msg, ticket)
        except Exception:
            # Not finished, so never committed: this partition's commits wait for a restart
            # to redeliver it, which is the at-least-once promise.
            log.exception(
                "handling failed unexpectedly; the command stays uncommitted",
                extra={"topic": self.topic, "partition": msg.partition(), "offset": offset},
            )
            return
        finally:
            ticket.done()
            child(MESSAGES_HANDLED, self.topic, HANDLER, outcome).inc()
            child(MESSAGE_HANDLING_SECONDS, self.topic, HANDLER).observe(
                time.monotonic() - started
            )
        with self._lock:
            tracker.finish(offset)
