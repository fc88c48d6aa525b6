"""The few classes an error of the transactional loop falls into, and what each one means.

As librdkafka's transactional producer documents them (INTRODUCTION.md, "Transactional
Producer", error handling), plus what a produced record's delivery report can say:

* ``retriable``: a timeout or a coordinator moving; the same call may be repeated.
* ``abortable``: the open transaction failed (a record not delivered, the group
  rebalanced under it: "task migrated"); abort it, rewind the inputs, try again.
* ``fenced``: another producer with this ``transactional.id`` started, or the broker
  aborted our transaction because it outlived ``transaction.timeout.ms``; this producer
  can do nothing more.
* ``fatal``: anything else that is neither retriable nor abortable (librdkafka's advice:
  treat it as fatal).

Also :func:`record_rejected`: a delivery error that will come back however often the
same record is produced (too large, invalid, not authorised), which makes the input that
caused it poison. Pure: only looks at the :class:`~confluent_kafka.KafkaError`.
"""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError, KafkaException

__all__ = [
    "ErrorClass",
    "FatalError",
    "Fenced",
    "Interrupt",
    "Stopped",
    "TransactionAborted",
    "classify",
    "kafka_error",
    "record_rejected",
]


class ErrorClass(Enum):
    """What to do about an error of a transactional call."""

    RETRIABLE = "retriable"
    ABORTABLE = "abortable"
    FENCED = "fenced"
    FATAL = "fatal"


class Interrupt(Exception):
    """Whatever is being decided stops here: the transaction it belongs to is gone."""


class Fenced(Interrupt):
    """This instance's producer was fenced: a newer one owns its ``transactional.id``, or
    the broker aborted its transaction for outliving the transaction timeout."""


class FatalError(Interrupt):
    """An error the orchestrator cannot recover from in this process."""


class Stopped(Interrupt):
    """A stop was asked while the loop could not turn (reading states back): it ends there."""


class TransactionAborted(Interrupt):
    """The open transaction was aborted; its inputs are re-read from the committed offsets."""


#: librdkafka's codes for "this producer was fenced" (the broker's codes are mapped to
#: ``_FENCED`` by librdkafka; the raw ones are listed for errors it passes through).
_FENCED_CODES = frozenset(
    code
    for name in ("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH")
    if (code := getattr(KafkaError, name, None)) is not None
)

#: Delivery errors that producing the same record again cannot cure.
_REJECTED_CODES = frozenset(
    code
    for name in (
        "MSG_SIZE_TOO_LARGE",
        "INVALID_MSG",
        "INVALID_MSG_SIZE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "CORRUPT_MESSAGE",
        "TOPIC_AUTHORIZATION_FAILED",
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_TOPIC",
        "_MSG_SIZE_TOO_LARGE",
        "_INVALID_ARG",
        "_BAD_MSG",
    )
    if (code := getattr(KafkaError, name, None)) is not None
)


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The :class:`KafkaError` a confluent-kafka exception carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def classify(error: KafkaError) -> ErrorClass:
    """The class of an error raised by a transactional producer call."""
    if error.code() in _FENCED_CODES:
        return ErrorClass.FENCED
    if error.fatal():
        return ErrorClass.FATAL
    if error.txn_requires_abort():
        return ErrorClass.ABORTABLE
    if error.retriable():
        return ErrorClass.RETRIABLE
    return ErrorClass.FATAL


def record_rejected(error: KafkaError) -> bool:
    """Whether a record's delivery error will recur however often it is produced."""
    return error.code() in _REJECTED_CODES
