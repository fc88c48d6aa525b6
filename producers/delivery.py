"""Delivery reports: the broker's answer for each produced record, gathered per call."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, InvalidStateError

from confluent_kafka import KafkaError, KafkaException, Message

__all__ = ["DeliveryBatch", "PublishError"]


class PublishError(Exception):
    """The broker did not ack a message (or it could not be produced at all)."""

    def __init__(
        self, message: str, *, topic: str, key: bytes | None, error: KafkaError | None = None
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.key = key
        self.error = error

    @classmethod
    def of(
        cls, topic: str, key: bytes | None, error: KafkaError | KafkaException | str
    ) -> PublishError:
        """An error for one record, with the broker's (or client's) error when there is one."""
        kafka_error = error if isinstance(error, KafkaError) else None
        if isinstance(error, KafkaException) and error.args:
            first = error.args[0]
            kafka_error = first if isinstance(first, KafkaError) else None
        return cls(
            f"publish to {topic!r} (key {key!r}) failed: {error}",
            topic=topic,
            key=key,
            error=kafka_error,
        )

    @property
    def retriable(self) -> bool:
        """Whether librdkafka deems the error transient (a later retry may succeed)."""
        return bool(self.error is not None and self.error.retriable())


class DeliveryBatch:
    """The delivery reports of the records one publish call produced.

    Records are registered with :meth:`add` (which gives the ``on_delivery`` callback);
    :attr:`done` resolves once every one of them is reported, from the producer's poll
    thread, so a thread can block on it and asyncio can ``wrap_future`` it.
    """

    def __init__(self) -> None:
        self.done: Future[None] = Future()
        self._records: list[tuple[str, bytes | None]] = []
        self._results: list[Message | PublishError | None] = []
        self._remaining = 0
        self._sealed = False
        self._lock = threading.Lock()

    def add(self, topic: str, key: bytes | None) -> _Callback:
        """Register one record about to be produced; returns its delivery callback."""
        with self._lock:
            index = len(self._records)
            self._records.append((topic, key))
            self._results.append(None)
            self._remaining += 1
        return _Callback(self, index)

    def withdraw(self) -> None:
        """The last registered record could not be produced after all."""
        with self._lock:
            self._records.pop()
            self._results.pop()
            self._remaining -= 1

    def seal(self) -> None:
        """No more records: resolve as soon as every registered one is reported."""
        with self._lock:
            self._sealed = True
            finished = self._remaining == 0
        if finished:
            self._resolve()

    def _report(self, index: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            topic, key = self._records[index]
            self._results[index] = PublishError.of(topic, key, err)
        else:
            self._results[index] = msg
        with self._lock:
            self._remaining -= 1
            finished = self._sealed and self._remaining == 0
        if finished:
            self._resolve()

    def _resolve(self) -> None:
        with contextlib.suppress(InvalidStateError):  # the waiter gave up and cancelled it
            self.done.set_result(None)

    def outcome(self) -> list[Message]:
        """The delivered messages in produce order, or :class:`PublishError` for the failures
        (records never reported count as timed out)."""
        messages: list[Message] = []
        errors: list[PublishError] = []
        for (topic, key), result in zip(self._records, self._results, strict=True):
            if result is None:
                errors.append(PublishError.of(topic, key, "no delivery report in time"))
            elif isinstance(result, PublishError):
                errors.append(result)
            else:
                messages.append(result)
        if not errors:
            return messages
        first = errors[0]
        if len(errors) == 1:
            raise first
        raise PublishError(
            f"{first} (and {len(errors) - 1} more of {len(self._records)} failed)",
            topic=first.topic,
            key=first.key,
            error=first.error,
        )


class _Callback:
    """``on_delivery`` of one record (a slotted object is cheaper than a closure)."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: DeliveryBatch, index: int) -> None:
        self.batch = batch
        self.index = index

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.batch._report(self.index, err, msg)
