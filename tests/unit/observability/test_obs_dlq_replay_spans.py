"""A replayed dead letter is a publish like any other: its own `send` span, in the trace the
record was parked from, ended by the broker's answer."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from foldflow import dlq
from foldflow.dlq import from_record

PARKED_FROM = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


class FakeMessage:
    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 99


class FakeProducer:
    """Records what would be produced and answers like the broker did (pure unit test)."""

    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})
        kwargs["on_delivery"](None, FakeMessage())

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_a_replayed_letter_is_sent_in_its_own_span_of_the_original_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(dlq, "_tracer", provider.get_tracer("test"))
    headers = [("event_type", b"workflow.cancel.v1"), ("traceparent", PARKED_FROM.encode()),
               ("dlq.reason", b"boom"), ("dlq.topic", b"t.wf.commands"),
               ("dlq.partition", b"3"), ("dlq.offset", b"41")]
    letter = from_record(partition=0, offset=5, key=b"wf-9", value=b"bytes", headers=headers,
                         record_timestamp_ms=1)
    producer = FakeProducer()

    assert dlq.replay(producer, [letter]) == [letter]  # type: ignore[arg-type]

    [sent] = exporter.get_finished_spans()
    assert sent.kind is SpanKind.PRODUCER and sent.name == "send t.wf.commands"
    assert format(sent.context.trace_id, "032x") == "a" * 32
    assert sent.parent is not None and format(sent.parent.span_id, "016x") == "b" * 16
    assert (sent.attributes or {})["messaging.kafka.offset"] == 99
    [record] = producer.produced
    assert record["partition"] == 3 and record["key"] == b"wf-9"
    produced = dict(record["headers"])
    assert produced["event_type"] == b"workflow.cancel.v1"
    assert produced["traceparent"].decode().split("-")[2] == format(sent.context.span_id, "016x")
    assert not any(name.startswith("dlq.") for name in produced)
