"""What a worker does with one record of ``wf.tasks.<type>``: decode it, run the attempt
in a span, publish the result (or park the record on ``wf.dlq``) and wait for the ack.

Kafka consumption and offsets live in :mod:`foldflow.workers.consumer`; this module never commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.trace import Span

from foldflow.observability.logging import bind
from foldflow.observability.metrics import STEP_ATTEMPTS, STEP_DURATION_SECONDS, child
from foldflow.observability.tracing import Header, consuming
from foldflow.producers import Publisher, PublishError
from foldflow.schemas.codec import CodecError, decode
from foldflow.schemas.messages import Envelope, ExecuteTask
from foldflow.workers.execution import result_envelope, run_attempt
from foldflow.workers.registry import TaskRegistry

__all__ = ["RecordHandler", "Slots", "Ticket"]

log = logging.getLogger("foldflow.worker")
tracer = trace.get_tracer("foldflow.worker")

_RETRY_MIN_S, _RETRY_MAX_S = 0.1, 5.0


@dataclass
class Slots:
    """The worker-wide concurrency budget, shared by every task type's consumer.

    ``in_use`` records are in hand (fetched, not yet done); of those, at most ``limit``
    run a handler at once (the semaphore), and once a record's result is handed to the
    producer it stops counting against ``limit`` while it waits for its ack: up to
    ``publish_factor * limit`` records may be in hand in all. ``free`` bounds fetching.
    Only the event loop thread touches it.
    """

    limit: int
    in_use: int = 0
    publishing: int = 0
    publish_factor: int = 4

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.limit)
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def free(self) -> int:
        running = self.in_use - self.publishing
        return max(0, min(self.limit - running, self.limit * self.publish_factor - self.in_use))

    def take(self) -> Ticket:
        """One fetched record enters the budget; :meth:`Ticket.done` gives it back."""
        self.in_use += 1
        return Ticket(self)

    async def wait_free(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until a record leaves the budget; True if free."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.free <= 0:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Ticket:
    """One record's place in :class:`Slots`: running, then publishing, then done."""

    __slots__ = ("_slots", "_state")

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._state = "running"

    def publishing(self) -> None:
        """The handler is done and its result is with the producer: free a handler slot."""
        if self._state == "running":
            self._state = "publishing"
            self._slots.publishing += 1
            self._slots._wake()

    def done(self) -> None:
        """The record is finished (acked, dead-lettered or given up); idempotent."""
        if self._state == "done":
            return
        if self._state == "publishing":
            self._slots.publishing -= 1
        self._state = "done"
        self._slots.in_use -= 1
        self._slots._wake()


def headers_of(msg: Message) -> list[Header]:
    """A record's headers as a list of ``(name, value)``."""
    headers = msg.headers()
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


@dataclass
class RecordHandler:
    """Handles the records of one task type's topic."""

    task_type: str
    topic: str
    results_topic: str
    registry: TaskRegistry
    publisher: Publisher
    pool: Executor
    slots: Slots
    #: The consumer group (``messaging.consumer.group.name`` of the process spans).
    group: str | None = None

    async def handle(self, msg: Message, ticket: Ticket | None = None) -> str:
        """Handle one record; returns the outcome label (``ok`` or ``dlq``) once its result
        (or DLQ copy) is acked. The handler slot is released (``ticket.publishing()``) as
        soon as the result is handed to the producer, not when it is acked, so the ack wait
        never holds a slot (the caller still commits only after this returns).

        All of it runs in the record's ``process <topic>`` span, child of the orchestrator's
        ``send`` span, so the result (and a DLQ copy) continue the workflow's trace."""
        with consuming(
            tracer, topic=self.topic, partition=msg.partition() or 0, offset=msg.offset() or 0,
            headers=headers_of(msg), group=self.group, key=msg.key(),
        ) as span:
            outcome = await self._handle(msg, ticket, span)
            span.set_attribute("foldflow.outcome", outcome)
            return outcome

    async def _handle(self, msg: Message, ticket: Ticket | None, span: Span) -> str:
        try:
            command = decode(msg.value() or b"")
        except CodecError as exc:
            return await self.dead_letter(msg, exc)
        task = command.payload
        if not isinstance(task, ExecuteTask):
            reason = f"expected task.execute.v1 on {self.topic}, got {command.event_type}"
            return await self.dead_letter(msg, reason, kind="UnexpectedMessage")
        spec = self.registry.get(task.task_type)
        if spec is None or task.task_type != self.task_type:
            reason = (
                f"unknown task type {task.task_type!r} on {self.topic} "
                f"(this consumer serves {self.task_type!r})"
            )
            return await self.dead_letter(msg, reason, kind="UnknownTaskType")
        fields = {"task_id": task.task_id, "task_type": task.task_type, "attempt": task.attempt}
        ids = {"workflow_id": command.workflow_id, "correlation_id": command.correlation_id}
        span.set_attributes({
            "messaging.message.id": command.event_id,
            "foldflow.workflow_id": command.workflow_id,
            "foldflow.task_id": task.task_id,
            "foldflow.task_type": task.task_type,
            "foldflow.attempt": task.attempt,
        })
        async with self.slots.semaphore:
            with bind(**ids):
                log.debug("task started", extra=fields)  # the outcome line says the rest
                outcome = await run_attempt(spec, command, pool=self.pool)
                child(STEP_DURATION_SECONDS, task.task_type).observe(outcome.duration)
                child(STEP_ATTEMPTS, task.task_type, outcome.outcome).inc()
                span.set_attribute("foldflow.attempt.outcome", outcome.outcome)
                error = getattr(outcome.result, "error", None)
                # A success is a DEBUG line: at INFO, one line per task was ~6% of a busy
                # worker's CPU, built even when the repeat filter then dropped it.
                level = logging.DEBUG if error is None else logging.INFO
                if log.isEnabledFor(level):
                    log.log(level, "task %s", outcome.outcome, extra={
                        **fields, "duration": round(outcome.duration, 6), "error": error})
                result = result_envelope(command, outcome.result, timestamp=int(time.time() * 1000))
                # Started inside the span (a task copies the context), so the result's send
                # span is a child of this record's process span; produced on the loop's
                # next turn.
                publishing = asyncio.ensure_future(self.publish_result(result, fields))
        if ticket is not None:
            ticket.publishing()
        await publishing  # cancelling this handler cancels the publish too
        return "ok"

    async def publish_result(self, result: Envelope, fields: dict[str, Any]) -> None:
        """Publish until acked: the offset is not committed before (only cancellation —
        the grace period running out — gives up, and then the command is redelivered)."""
        delay = _RETRY_MIN_S
        while True:
            try:
                await self.publisher.publish_async(self.results_topic, result)
                return
            except PublishError as exc:
                log.error("result not acked; retrying", extra={**fields, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    async def dead_letter(
        self, msg: Message, reason: str | BaseException, *, kind: str | None = None
    ) -> str:
        """Park the record on ``wf.dlq`` with ``reason``, retrying until acked; ``"dlq"``."""
        partition, offset = msg.partition(), msg.offset()
        log.warning(
            "message to DLQ",
            extra={
                "topic": self.topic,
                "partition": partition,
                "offset": offset,
                "reason": str(reason),
            },
        )
        delay = _RETRY_MIN_S
        while True:
            try:
                await asyncio.to_thread(
                    self.publisher.send_to_dlq,
                    self.topic,
                    msg.key(),
                    msg.value(),
                    headers_of(msg),
                    reason,
                    partition=partition or 0,
                    offset=offset or 0,
                    reason_kind=kind,
                )
                return "dlq"
            except PublishError as exc:
                log.error("DLQ publish not acked; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
