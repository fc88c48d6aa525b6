"""Messaging spans: the semantic conventions' names and attributes, parents and links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from foldflow.observability.tracing import (
    consuming,
    delivered,
    extract_context,
    inject_headers,
    link_from,
    links_from,
    producing,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.clear()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer(__name__)


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_send_span_is_the_parent_its_headers_carry_and_ends_on_delivery(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("request"):
        with producing(tracer, topic="wf.commands", key=b"wf-1", message_id="e-1",
                       conversation_id="c-1", body_size=42) as send:
            headers = inject_headers([("event_type", b"workflow.start.v1")])
        assert "send wf.commands" not in _by_name(exporter)  # open until the broker answers
    delivered(send, partition=3, offset=17)
    delivered(send, partition=4, offset=99)  # a second report changes nothing

    spans = _by_name(exporter)
    sent, request = spans["send wf.commands"], spans["request"]
    assert sent.kind is SpanKind.PRODUCER
    assert sent.parent is not None and sent.parent.span_id == request.context.span_id
    assert dict(sent.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "wf.commands",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 17,
        "messaging.kafka.message.key": "wf-1",
        "messaging.message.id": "e-1",
        "messaging.message.conversation_id": "c-1",
        "messaging.message.body.size": 42,
    }
    carried = trace.get_current_span(extract_context(headers)).get_span_context()
    assert carried.span_id == sent.context.span_id


def test_a_process_span_is_the_child_of_the_send_span_in_the_record_headers(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with producing(tracer, topic="wf.tasks.x") as send:
        headers = inject_headers()
    delivered(send, partition=0, offset=5)
    with tracer.start_as_current_span("unrelated ambient span"), consuming(
        tracer, topic="wf.tasks.x", partition=0, offset=5, headers=headers,
        group="wf.worker.x", key=b"\xff\xfe", attributes={"foldflow.attempt": 2},
    ) as span:
        assert trace.get_current_span() is span

    spans = _by_name(exporter)
    process = spans["process wf.tasks.x"]
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == spans["send wf.tasks.x"].context.span_id
    assert process.context.trace_id == spans["send wf.tasks.x"].context.trace_id
    attributes = dict(process.attributes or {})
    assert attributes == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "wf.tasks.x",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 5,
        "messaging.consumer.group.name": "wf.worker.x",
        "foldflow.attempt": 2,
    }  # a key that is not text is left out, as the convention says


def test_a_record_without_context_starts_its_own_trace(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("ambient") as ambient, consuming(
        tracer, topic="t", partition=1, offset=2, headers=[("event_type", b"x")], group=None
    ):
        pass
    process = _by_name(exporter)["process t"]
    assert process.parent is None
    assert process.context.trace_id != ambient.get_span_context().trace_id
    assert "messaging.consumer.group.name" not in (process.attributes or {})


def test_without_a_current_span_the_send_span_continues_the_trace_its_headers_carry(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with producing(tracer, topic="wf.commands", headers=[("traceparent", parent.encode())]) as s:
        headers = dict(inject_headers([("traceparent", parent.encode())]))
    delivered(s, error="Broker: Message size too large")

    sent = _by_name(exporter)["send wf.commands"]
    assert format(sent.context.trace_id, "032x") == "a" * 32
    assert sent.parent is not None and format(sent.parent.span_id, "016x") == "b" * 16
    assert headers["traceparent"].decode().split("-")[2] == format(sent.context.span_id, "016x")
    assert sent.status.status_code is StatusCode.ERROR
    assert "too large" in (sent.status.description or "")


def test_an_exception_inside_producing_ends_the_span_as_an_error(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(BufferError), producing(tracer, topic="t"):
        raise BufferError("queue full")
    sent = _by_name(exporter)["send t"]
    assert sent.status.status_code is StatusCode.ERROR
    assert (sent.attributes or {})["error.type"] == "BufferError"
    assert [e.name for e in sent.events] == ["exception"]


def test_links_name_each_distinct_cause_once(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("a") as a:
        from_a = inject_headers()
    with tracer.start_as_current_span("b") as b:
        from_b = inject_headers()

    links = links_from([from_a, None, from_b, from_a, [("event_type", b"x")]])

    assert [link.context.span_id for link in links] == [
        a.get_span_context().span_id, b.get_span_context().span_id]
    assert link_from(None) is None
    with tracer.start_as_current_span("parent"), producing(tracer, topic="t", links=links) as s:
        pass
    delivered(s)
    sent = _by_name(exporter)["send t"]
    assert [link.context.span_id for link in sent.links] == [
        a.get_span_context().span_id, b.get_span_context().span_id]
