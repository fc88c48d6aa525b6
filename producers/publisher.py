"""The idempotent confluent-kafka producer every Foldflow service publishes with.

``acks=all`` + ``enable.idempotence`` (no loss, no duplicates from producer retries),
``partitioner=murmur2_random`` (the same partition as aiokafka/faust and the Java client
pick for a key), small ``linger.ms`` and lz4 compression. A background thread
serves delivery reports, so :meth:`Publisher.publish` (threads) and
:meth:`Publisher.publish_async` (asyncio) both return only once the broker acked. Produce
calls go straight to librdkafka from the caller's thread (it batches concurrent records
itself, ``linger.ms``); asyncio waiters acked by one poll are woken with one call into
their event loop, not a thread hop each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace
from opentelemetry.trace import Link, Span

from foldflow.kafka import kafka_config
from foldflow.observability.metrics import DLQ_MESSAGES
from foldflow.observability.tracing import (
    Headers,
    delivered,
    header_list,
    inject_headers,
    link_from,
    producing,
)
from foldflow.producers.delivery import DeliveryBatch, PublishError
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["PublishError", "Publisher", "dead_letter_headers", "producer_config"]

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer("foldflow.producers")
_OutHeaders = list[tuple[str, str | bytes | None]]
_EXTRA_WAIT_S = 5.0  # librdkafka fails a message after message.timeout.ms; wait a bit longer


def producer_config(settings: Settings, *, source: str) -> dict[str, Any]:
    """The librdkafka configuration of a Foldflow producer (exposed for tests and tools)."""
    return kafka_config(settings, {
        "client.id": f"foldflow-{source}",
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": settings.publish_timeout_ms,
        # Topics come from `foldflow topics ensure` with the right partition count; a
        # misspelt topic must fail, not appear with the broker's defaults.
        "allow.auto.create.topics": False,
    })


def dead_letter_headers(
    topic_of_origin: str,
    headers: Headers | None,
    reason: str | BaseException,
    *,
    partition: int,
    offset: int,
    reason_kind: str | None = None,
) -> tuple[list[tuple[str, bytes]], str]:
    """The headers of a record parked on ``wf.dlq``, and its reason kind.

    The original headers (trace context included, any older ``dlq.*`` dropped) plus
    ``dlq.reason``, ``dlq.reason_kind``, ``dlq.topic``, ``dlq.partition``, ``dlq.offset``
    and ``dlq.timestamp`` (ms). ``reason`` may be the exception itself: its class name
    becomes the kind unless one is given.
    """
    if isinstance(reason, BaseException):
        kind = reason_kind or type(reason).__name__
        text = str(reason) or type(reason).__name__
    else:
        kind, text = reason_kind or "other", reason
    original = [h for h in header_list(headers) if not h[0].startswith("dlq.")]
    return [
        *original,
        ("dlq.reason", text.encode()),
        ("dlq.reason_kind", kind.encode()),
        ("dlq.topic", topic_of_origin.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
        ("dlq.timestamp", str(int(time.time() * 1000)).encode()),
    ], kind


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # its waiter may have timed out and gone
            future.set_result(None)


def _wake(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[None]]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, futures)


def _key_bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class Publisher:
    """Publishes envelopes (and raw DLQ records) and waits for the broker's ack.

    Thread-safe; one per process is enough. Use as a context manager or call
    :meth:`close` to flush and stop the delivery-report thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        source: str,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.topology = Topology.of(settings)
        self._timeout_s = settings.publish_timeout_ms / 1000 + _EXTRA_WAIT_S
        self._producer = Producer({**producer_config(settings, source=source), **(config or {})})
        self._closed = threading.Event()
        # Asyncio waiters whose batches the current poll acked (poll thread only).
        self._acked_async: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._poller = threading.Thread(
            target=self._serve_delivery_reports, name=f"publisher-{source}", daemon=True
        )
        self._poller.start()

    # --- lifecycle ---------------------------------------------------------------------

    def _serve_delivery_reports(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a callback failed; the thread must keep serving the others
                _log.exception("delivery report callback failed")
            if self._acked_async:
                self._hand_over_acks()

    def _hand_over_acks(self) -> None:
        """Wake the asyncio waiters acked by the last poll: one call per event loop."""
        acked, self._acked_async = self._acked_async, []
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for loop, future in acked:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            _wake(loop, futures)

    def _acked(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        """A batch awaited by asyncio code is acked (or failed): wake its waiter.

        From the poll thread (nearly always) the waiter is woken after the poll that
        served the report, with every other waiter that poll acked: many concurrent
        publishes cost their event loop one wake-up, not one each.
        """
        if threading.current_thread() is self._poller:
            self._acked_async.append((loop, future))
        else:  # reported during close()'s flush, or before the batch was sealed
            _wake(loop, [future])

    def close(self) -> None:
        """Flush what is in flight and stop the delivery-report thread."""
        if self._closed.is_set():
            return
        self._producer.flush(self._timeout_s)
        self._closed.set()
        self._poller.join()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- producing ---------------------------------------------------------------------

    def _produce(
        self,
        batch: DeliveryBatch,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        *,
        message_id: str | None = None,
        conversation_id: str | None = None,
        links: Sequence[Link] = (),
    ) -> None:
        """Hand one record to librdkafka inside its ``send <topic>`` span (which the record's
        trace headers name as parent, and the delivery report ends); its delivery report
        goes to ``batch``."""
        if self._closed.is_set():
            raise PublishError.of(topic, key, "publisher is closed")
        with producing(
            _tracer, topic=topic, key=key, message_id=message_id,
            conversation_id=conversation_id, body_size=len(value or b""), links=links,
            headers=headers,
        ) as span:
            traced = [h for h in headers if h[0] not in ("traceparent", "tracestate")]
            self._produce_traced(batch, topic, value, key, inject_headers(traced), span)

    def _produce_traced(
        self,
        batch: DeliveryBatch,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        span: Span,
    ) -> None:
        report = batch.add(topic, key)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                delivered(span, partition=msg.partition(), offset=msg.offset())
            else:
                delivered(span, error=str(err))
            report(err, msg)

        deadline: float | None = None
        while True:
            try:
                self._producer.produce(
                    topic, value, key, on_delivery=on_delivery, headers=_OutHeaders(headers)
                )
                return
            except BufferError:  # local queue full: the poll thread drains it
                deadline = deadline or time.monotonic() + self._timeout_s
                if time.monotonic() > deadline:
                    batch.withdraw()
                    raise PublishError.of(topic, key, "local producer queue stayed full") from None
                time.sleep(0.005)
            except KafkaException as exc:
                batch.withdraw()
                raise PublishError.of(topic, key, exc) from exc

    def _produce_envelopes(
        self,
        items: Iterable[tuple[str, Envelope]],
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> DeliveryBatch:
        batch = DeliveryBatch()
        extra = [h for h in header_list(headers) if h[0] != "event_type"]
        for topic, envelope in items:
            value = encode(envelope)
            key_bytes = _key_bytes(key if key is not None else envelope.workflow_id)
            hdrs = [("event_type", envelope.event_type.encode()), *extra]
            self._produce(batch, topic, value, key_bytes, hdrs, message_id=envelope.event_id,
                          conversation_id=envelope.correlation_id)
        batch.seal()
        return batch

    def _wait(self, batch: DeliveryBatch) -> list[Message]:
        with contextlib.suppress(FutureTimeout):
            batch.done.result(timeout=self._timeout_s)
        return batch.outcome()

    async def _wait_async(self, batch: DeliveryBatch) -> list[Message]:
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()
        batch.done.add_done_callback(lambda _done: self._acked(loop, acked))
        # a timer of our own, not asyncio.wait's set, waiter and callbacks: ~4 us a publish
        timer = loop.call_later(self._timeout_s, _settle, [acked])
        try:
            await acked
        finally:
            timer.cancel()
        return batch.outcome()

    def publish(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> Message:
        """Encode ``envelope`` and produce it; return once the broker acked (the delivered
        message: partition, offset). The key defaults to ``envelope.workflow_id``; headers
        get ``event_type`` and, inside a span, ``traceparent``/``tracestate``.

        Raises :class:`PublishError` (not acked) or ``foldflow.schemas.codec.SchemaViolationError``.
        """
        return self._wait(self._produce_envelopes([(topic, envelope)], key, headers))[0]

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> list[Message]:
        """Produce every ``(topic, envelope)`` (keyed by workflow id), then wait for all acks.

        Order per partition is kept (idempotent producer). Raises :class:`PublishError`
        naming the first failure if any message was not acked.
        """
        return self._wait(self._produce_envelopes(items))

    async def publish_async(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> Message:
        """:meth:`publish` for asyncio code: awaits the ack without blocking the loop."""
        batch = self._produce_envelopes([(topic, envelope)], key, headers)
        return (await self._wait_async(batch))[0]

    async def publish_many_async(self, items: Iterable[tuple[str, Envelope]]) -> list[Message]:
        """:meth:`publish_many` for asyncio code: awaits every ack without blocking the loop."""
        return await self._wait_async(self._produce_envelopes(items))

    # --- dead letters ------------------------------------------------------------------

    def send_to_dlq(
        self,
        topic_of_origin: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None,
        reason: str | BaseException,
        *,
        partition: int,
        offset: int,
        reason_kind: str | None = None,
    ) -> Message:
        """Park a record that could not be handled on ``wf.dlq`` and wait for the ack.

        The original key, value and headers (trace context included) travel unchanged,
        plus ``dlq.reason``, ``dlq.reason_kind``, ``dlq.topic``, ``dlq.partition``,
        ``dlq.offset`` and ``dlq.timestamp`` (ms). ``reason`` may be the exception itself:
        its class name becomes the ``reason_kind`` (and the metric label) unless one is given.
        """
        dlq_headers, kind = dead_letter_headers(
            topic_of_origin, headers, reason, partition=partition, offset=offset,
            reason_kind=reason_kind,
        )  # fmt: skip
        batch = DeliveryBatch()
        # The parked record's own producer is a cause of this one besides the span that
        # gave up on it: link it, and keep the DLQ record in the current trace.
        cause = link_from(header_list(headers))
        self._produce(batch, self.topology.dlq, value, _key_bytes(key), dlq_headers,
                      links=[cause] if cause is not None else [])
        batch.seal()
        delivered = self._wait(batch)[0]
        DLQ_MESSAGES.labels(topic=topic_of_origin, reason_kind=kind).inc()
        return delivered
