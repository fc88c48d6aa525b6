"""Which class a transactional error falls into (librdkafka's flags and codes)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from foldflow.processors.runtime.errors import ErrorClass, classify, kafka_error, record_rejected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KafkaError(KafkaError._TIMED_OUT, "t", retriable=True), ErrorClass.RETRIABLE),
        (KafkaError(KafkaError._STATE, "a", txn_requires_abort=True), ErrorClass.ABORTABLE),
        (KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalanced", txn_requires_abort=True),
         ErrorClass.ABORTABLE),
        (KafkaError(KafkaError._FENCED, "newer instance", fatal=True), ErrorClass.FENCED),
        (KafkaError(KafkaError.PRODUCER_FENCED, "fenced"), ErrorClass.FENCED),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "epoch"), ErrorClass.FENCED),
        (KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "no", fatal=True),
         ErrorClass.FATAL),
        (KafkaError(KafkaError._INVALID_ARG, "neither flag"), ErrorClass.FATAL),
    ],
)  # fmt: skip
def test_errors_fall_into_one_class_each(error: KafkaError, expected: ErrorClass) -> None:
    assert classify(error) is expected


def test_a_fence_wins_over_the_fatal_flag_and_abortable_over_retriable() -> None:
    both = KafkaError(KafkaError._TIMED_OUT, "x", retriable=True, txn_requires_abort=True)
    assert classify(both) is ErrorClass.ABORTABLE


def test_the_kafka_error_of_an_exception() -> None:
    error = KafkaError(KafkaError._STATE, "s")
    assert kafka_error(KafkaException(error)) is error
    assert kafka_error(KafkaException("text only")) is None
    assert kafka_error(ValueError("x")) is None


def test_records_refused_for_good_are_told_apart_from_transient_failures() -> None:
    assert record_rejected(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert record_rejected(KafkaError(KafkaError.INVALID_RECORD))
    assert record_rejected(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not record_rejected(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert not record_rejected(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
