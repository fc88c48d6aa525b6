"""Dead letters: parsing the dlq.* headers, the table, --since, the watermarks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from rich.console import Console

from foldflow.cli.dlq import dlq_table, parse_since
from foldflow.dlq import from_record, watermarks
from foldflow.schemas import codec
from foldflow.schemas.messages import CancelWorkflow, Envelope


def _headers(**extra: str) -> list[tuple[str, bytes | None]]:
    base = {
        "event_type": "workflow.cancel.v1",
        "dlq.reason": "UnknownSchemaError: fingerprint 00ff",
        "dlq.reason_kind": "UnknownSchemaError",
        "dlq.topic": "t.wf.commands",
        "dlq.partition": "3",
        "dlq.offset": "41",
        "dlq.timestamp": "1764380000000",
    }
    base.update(extra)
    return [(k, v.encode()) for k, v in base.items()]


def test_a_decodable_dead_letter() -> None:
    value = codec.encode(Envelope("e1", 1, "cli", "c", "wf-9", CancelWorkflow("x"), tenant="t"))
    letter = from_record(partition=1, offset=7, key=b"wf-9", value=value, headers=_headers(),
                         record_timestamp_ms=5)
    assert (letter.origin_topic, letter.origin_partition, letter.origin_offset) == (
        "t.wf.commands", 3, 41)
    assert letter.reason_kind == "UnknownSchemaError"
    assert letter.timestamp_ms == 1764380000000
    assert letter.event_type == "workflow.cancel.v1"
    assert letter.original_headers == (("event_type", b"workflow.cancel.v1"),)


def test_an_undecodable_dead_letter_without_metadata() -> None:
    letter = from_record(partition=0, offset=0, key=None, value=b"garbage", headers=None,
                         record_timestamp_ms=123)
    assert letter.event_type is None
    assert letter.origin_topic is None and letter.origin_partition is None
    assert letter.timestamp_ms == 123
    assert letter.reason == "(no reason given)"


def test_the_table_lists_reason_origin_time_and_type() -> None:
    letters = [
        from_record(partition=0, offset=0, key=b"k1", value=b"\xc3\x01bad", headers=_headers(),
                    record_timestamp_ms=0),
    ]
    console = Console(record=True, width=220)
    console.print(dlq_table(letters, title="dlq"))
    text = console.export_text()
    assert "UnknownSchemaError: UnknownSchemaError: fingerprint 00ff" in text
    assert "t.wf.commands[3]@41" in text
    assert "(undecodable)" in text
    assert datetime.fromtimestamp(1764380000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") in text


def test_since_takes_durations_and_iso_times() -> None:
    now = 10_000_000
    assert parse_since("30s", now_ms=now) == now - 30_000
    assert parse_since("15m", now_ms=now) == now - 900_000
    assert parse_since("2h", now_ms=now) == now - 7_200_000
    assert parse_since("1d", now_ms=now) == now - 86_400_000
    assert parse_since("2026-01-01T00:00:00", now_ms=now) == 1767225600000
    assert parse_since("2026-01-01T01:00:00+01:00", now_ms=now) == 1767225600000
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday", now_ms=now)


class _FlakyBroker:
    """get_watermark_offsets that fails with ``errors`` first (a leader moving, say)."""

    def __init__(self, errors: list[KafkaError]) -> None:
        self.errors = errors
        self.calls = 0

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))
        return (3, 7)


def test_watermarks_retry_a_leader_that_is_moving() -> None:
    broker = _FlakyBroker([KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, retriable=True)] * 2)
    assert watermarks(broker, TopicPartition("wf.dlq", 0), timeout=1) == (3, 7)
    assert broker.calls == 3


def test_watermarks_raise_what_will_not_heal_at_once() -> None:
    broker = _FlakyBroker([KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, retriable=False)])
    with pytest.raises(KafkaException):
        watermarks(broker, TopicPartition("wf.dlq", 0), timeout=1)
    assert broker.calls == 1
