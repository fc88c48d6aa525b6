"""DeliveryBatch: delivery reports gathered per publish call (pure, no broker)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from foldflow.producers.delivery import DeliveryBatch, PublishError

MSG_A: Any = object()
MSG_B: Any = object()


def test_resolves_only_when_sealed_and_every_record_is_reported() -> None:
    batch = DeliveryBatch()
    first, second = batch.add("t", b"a"), batch.add("t", b"b")

    second(None, MSG_B)
    first(None, MSG_A)
    assert not batch.done.done()  # not sealed: more records may follow
    batch.seal()

    assert batch.done.done()
    assert batch.outcome() == [MSG_A, MSG_B]  # produce order, not report order


def test_an_empty_batch_resolves_when_sealed() -> None:
    batch = DeliveryBatch()
    batch.seal()
    assert batch.done.done() and batch.outcome() == []


def test_a_broker_error_raises_with_topic_key_and_kafka_error() -> None:
    batch = DeliveryBatch()
    batch.add("t", b"a")(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), MSG_A)
    batch.seal()

    with pytest.raises(PublishError) as caught:
        batch.outcome()
    assert (caught.value.topic, caught.value.key) == ("t", b"a")
    assert caught.value.error is not None
    assert caught.value.error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert not caught.value.retriable


def test_unreported_records_count_as_timed_out_and_failures_are_summed() -> None:
    batch = DeliveryBatch()
    batch.add("t", b"a")(KafkaError(KafkaError._MSG_TIMED_OUT), MSG_A)
    batch.add("t", b"b")
    batch.add("t", b"c")(None, MSG_B)
    batch.seal()

    assert not batch.done.done()
    with pytest.raises(PublishError, match=r"and 1 more of 3 failed"):
        batch.outcome()


def test_a_withdrawn_record_is_not_waited_for() -> None:
    batch = DeliveryBatch()
    batch.add("t", b"a")(None, MSG_A)
    batch.add("t", b"b")
    batch.withdraw()
    batch.seal()

    assert batch.done.done() and batch.outcome() == [MSG_A]


def test_a_report_after_the_waiter_cancelled_is_harmless() -> None:
    batch = DeliveryBatch()
    callback = batch.add("t", b"a")
    batch.seal()
    batch.done.cancel()

    callback(None, MSG_A)  # must not raise in the producer's poll thread

    assert batch.outcome() == [MSG_A]
