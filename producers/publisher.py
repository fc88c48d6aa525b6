"""The idempotent confluent-kafka producer every Foldflow service publishes with.

``acks=all`` + ``enable.idempotence`` (no loss, no duplicates from producer retries),
``partitioner=murmur2_random`` (the same partition as aiokafka/faust and the Java client
pick for a key, DESIGN §13), small ``linger.ms`` and lz4 compression. A background thread
serves delivery reports, so :meth:`Publisher.publish` (threads) and
:meth:`Publisher.publish_async` (asyncio) both return only once the broker acked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from foldflow.observability.metrics import DLQ_MESSAGES
from foldflow.observability.tracing import Header, Headers, header_list, inject_headers
from foldflow.settings import Settings
from foldflow.topics import Topology
from schemas.codec import encode
from schemas.messages import Envelope

__all__ = ["PublishError", "Publisher", "producer_config"]

_log = logging.getLogger(__name__)
_OutHeaders = list[tuple[str, str | bytes | None]]
_EXTRA_WAIT_S = 5.0  # librdkafka fails a message after message.timeout.ms; wait a bit longer


class PublishError(Exception):
    """The broker did not ack a message (or it could not be produced at all)."""

    def __init__(
        self, message: str, *, topic: str, key: bytes | None, error: KafkaError | None = None
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.key = key
        self.error = error

    @property
    def retriable(self) -> bool:
        """Whether librdkafka deems the error transient (a later retry may succeed)."""
        return bool(self.error is not None and self.error.retriable())


def producer_config(settings: Settings, *, source: str) -> dict[str, Any]:
    """The librdkafka configuration of a Foldflow producer (exposed for tests and tools)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
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
    }


def _key_bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def _describe(topic: str, key: bytes | None, error: KafkaError | KafkaException | str) -> str:
    return f"publish to {topic!r} (key {key!r}) failed: {error}"


@dataclass(frozen=True)
class _Pending:
    """One produced record waiting for its delivery report."""

    topic: str
    key: bytes | None
    future: Future[Message]

    def timed_out(self) -> PublishError:
        return PublishError(
            _describe(self.topic, self.key, "no delivery report in time"),
            topic=self.topic,
            key=self.key,
        )


def _delivered_or_raise(outcomes: Sequence[Message | BaseException]) -> list[Message]:
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if not errors:
        return [o for o in outcomes if not isinstance(o, BaseException)]
    first = errors[0]
    if not isinstance(first, PublishError):
        raise first
    if len(errors) == 1:
        raise first
    raise PublishError(
        f"{first} (and {len(errors) - 1} more of {len(outcomes)} failed)",
        topic=first.topic,
        key=first.key,
        error=first.error,
    )


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
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> Future[Message]:
        """Hand one record to librdkafka; the future resolves with its delivery report."""
        if self._closed.is_set():
            raise PublishError(_describe(topic, key, "publisher is closed"), topic=topic, key=key)
        future: Future[Message] = Future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if future.done():  # the waiter gave up (timeout, asyncio cancellation)
                return
            if err is not None:
                future.set_exception(
                    PublishError(_describe(topic, key, err), topic=topic, key=key, error=err)
                )
            else:
                future.set_result(msg)

        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                self._producer.produce(
                    topic, value, key, on_delivery=on_delivery, headers=_OutHeaders(headers)
                )
                return future
            except BufferError:  # local queue full: the poll thread drains it
                if time.monotonic() > deadline:
                    raise PublishError(
                        _describe(topic, key, "local producer queue stayed full"),
                        topic=topic,
                        key=key,
                    ) from None
                time.sleep(0.01)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                raise PublishError(
                    _describe(topic, key, exc), topic=topic, key=key, error=err
                ) from exc

    def _produce_envelope(
        self,
        topic: str,
        envelope: Envelope,
        key: str | bytes | None = None,
        headers: Iterable[Header] | None = None,
    ) -> _Pending:
        value = encode(envelope)
        key_bytes = _key_bytes(key if key is not None else envelope.workflow_id)
        base: list[Header] = [("event_type", envelope.event_type.encode())]
        base.extend(h for h in headers or () if h[0] != "event_type")
        hdrs = inject_headers(base)
        return _Pending(topic, key_bytes, self._produce(topic, value, key=key_bytes, headers=hdrs))

    def _wait(self, pending: Sequence[_Pending]) -> list[Message]:
        deadline = time.monotonic() + self._timeout_s
        outcomes: list[Message | BaseException] = []
        for p in pending:
            try:
                outcomes.append(p.future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                outcomes.append(p.timed_out())
            except PublishError as exc:
                outcomes.append(exc)
        return _delivered_or_raise(outcomes)

    def publish(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str | bytes | None = None,
        headers: Iterable[Header] | None = None,
    ) -> Message:
        """Encode ``envelope`` and produce it; return once the broker acked (the delivered
        message: partition, offset). The key defaults to ``envelope.workflow_id``.

        Raises :class:`PublishError` (not acked) or ``schemas.codec.SchemaViolationError``.
        """
        return self._wait([self._produce_envelope(topic, envelope, key, headers)])[0]

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> list[Message]:
        """Produce every ``(topic, envelope)`` (keyed by workflow id), then wait for all acks.

        Order per partition is kept (idempotent producer). Raises :class:`PublishError`
        naming the first failure if any message was not acked.
        """
        return self._wait([self._produce_envelope(topic, env) for topic, env in items])

    async def publish_async(
        self,
        topic: str,
        envelope: Envelope,
        *,
        key: str | bytes | None = None,
        headers: Iterable[Header] | None = None,
    ) -> Message:
        """:meth:`publish` for asyncio code: awaits the ack without blocking the loop."""
        return (await self._wait_async([self._produce_envelope(topic, envelope, key, headers)]))[0]

    async def publish_many_async(self, items: Iterable[tuple[str, Envelope]]) -> list[Message]:
        """:meth:`publish_many` for asyncio code: awaits every ack without blocking the loop."""
        return await self._wait_async([self._produce_envelope(topic, env) for topic, env in items])

    async def _wait_async(self, pending: Sequence[_Pending]) -> list[Message]:
        waiters = [asyncio.wrap_future(p.future) for p in pending]
        if not pending:
            return []
        _done, not_done = await asyncio.wait(waiters, timeout=self._timeout_s)
        outcomes: list[Message | BaseException] = []
        for p, waiter in zip(pending, waiters, strict=True):
            if waiter in not_done:
                waiter.cancel()
                outcomes.append(p.timed_out())
            else:
                exc = waiter.exception()
                outcomes.append(exc if exc is not None else waiter.result())
        return _delivered_or_raise(outcomes)

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
        if isinstance(reason, BaseException):
            kind = reason_kind or type(reason).__name__
            text = str(reason) or type(reason).__name__
        else:
            kind, text = reason_kind or "other", reason
        original = [h for h in header_list(headers) if not h[0].startswith("dlq.")]
        dlq_headers = [
            *original,
            ("dlq.reason", text.encode()),
            ("dlq.reason_kind", kind.encode()),
            ("dlq.topic", topic_of_origin.encode()),
            ("dlq.partition", str(partition).encode()),
            ("dlq.offset", str(offset).encode()),
            ("dlq.timestamp", str(int(time.time() * 1000)).encode()),
        ]
        key_bytes = _key_bytes(key)
        future = self._produce(self.topology.dlq, value, key=key_bytes, headers=dlq_headers)
        delivered = self._wait([_Pending(self.topology.dlq, key_bytes, future)])[0]
        DLQ_MESSAGES.labels(topic=topic_of_origin, reason_kind=kind).inc()
        return delivered
