"""W3C trace context over Kafka headers: what is injected comes back out."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from foldflow.observability.tracing import extract_context, header_list, inject_headers

_tracer = TracerProvider().get_tracer(__name__)


def test_inject_then_extract_keeps_trace_id_and_parent_span() -> None:
    with _tracer.start_as_current_span("produce") as span:
        headers = inject_headers([("event_type", b"workflow.started.v1")])
        sent = span.get_span_context()

    received = trace.get_current_span(extract_context(headers)).get_span_context()

    assert headers[0] == ("event_type", b"workflow.started.v1")
    assert received.trace_id == sent.trace_id
    assert received.span_id == sent.span_id
    assert received.is_remote
    with _tracer.start_as_current_span("consume", context=extract_context(headers)) as child:
        assert child.get_span_context().trace_id == sent.trace_id
        parent = getattr(child, "parent", None)  # an SDK span knows its parent context
        assert parent is not None and parent.span_id == sent.span_id


def test_inject_replaces_stale_trace_headers_and_accepts_dict_and_str_values() -> None:
    stale = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "k": "v", "n": None}
    with _tracer.start_as_current_span("produce") as span:
        headers = inject_headers(stale)
    names = [name for name, _ in headers]

    assert names.count("traceparent") == 1
    assert ("k", b"v") in headers and ("n", b"") in headers
    extracted = trace.get_current_span(extract_context(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id


def test_without_an_active_span_nothing_is_added_and_existing_context_is_kept() -> None:
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"

    headers = inject_headers([("traceparent", parent.encode())])

    assert headers == [("traceparent", parent.encode())]
    ctx = trace.get_current_span(extract_context(headers)).get_span_context()
    assert format(ctx.trace_id, "032x") == "a" * 32


def test_extract_from_headers_without_context_gives_no_valid_span() -> None:
    for headers in (None, [], [("event_type", b"x")], [("traceparent", b"garbage")]):
        assert not trace.get_current_span(extract_context(headers)).get_span_context().is_valid


def test_header_list_normalises_every_client_shape() -> None:
    assert header_list(None) == []
    assert header_list({"a": "x", "b": None}) == [("a", b"x"), ("b", b"")]
    assert header_list([("a", b"x")]) == [("a", b"x")]
