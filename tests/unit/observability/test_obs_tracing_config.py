"""Tracing configuration comes from the standard OTEL_* variables, read by the SDK."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from foldflow.observability import tracing
from foldflow.observability.tracing import TracingConfigError, build_provider, exporter_names
from foldflow.settings import Settings

OTEL = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _exporters(provider: object) -> list[object]:
    processors = provider._active_span_processor._span_processors  # type: ignore[attr-defined]
    return [p.span_exporter for p in processors]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, ["otlp_proto_grpc"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
          "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
          "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, []),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp_proto_grpc"]),
    ],
)
def test_exporter_names_follow_the_standard_variables(
    env: dict[str, str], expected: list[str]
) -> None:
    assert exporter_names(env) == expected


def test_an_unknown_protocol_or_exporter_is_refused_with_the_choices() -> None:
    with pytest.raises(TracingConfigError, match="grpc, http/protobuf"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp",
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(TracingConfigError, match=r"'zipkin'.*not installed.*console"):
        tracing._exporter("zipkin")


def test_grpc_and_http_exporters_read_their_endpoint_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4317")
    [grpc] = _exporters(build_provider(_settings(), service="worker"))
    assert isinstance(grpc, Grpc)
    assert grpc._endpoint == "collector.example:4317"
    grpc.shutdown()

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    [http] = _exporters(build_provider(_settings(), service="worker"))
    assert isinstance(http, Http)
    assert http._endpoint == "http://collector.example:4318/v1/traces"


def test_the_legacy_foldflow_endpoint_still_exports_over_http() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    [http] = _exporters(build_provider(_settings(otlp_endpoint="http://c:4318"), service="x"))
    assert isinstance(http, Http) and http._endpoint == "http://c:4318/v1/traces"
    assert _exporters(build_provider(_settings(), service="x")) == []


def test_sampler_and_console_exporter_come_from_the_sdk_reading_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = build_provider(_settings(), service="gateway")
    assert provider.sampler is ALWAYS_OFF
    [console] = _exporters(provider)
    assert isinstance(console, ConsoleSpanExporter)


def test_resource_names_the_service_and_instance_unless_the_operator_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attributes = build_provider(_settings(instance_id="gw-1"), service="gw").resource.attributes
    assert attributes["service.name"] == "gw"
    assert attributes["service.instance.id"] == "gw-1"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "foldflow-gateway")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES",
                       "deployment.environment.name=prod,service.instance.id=pod-7")
    attributes = build_provider(_settings(instance_id="gw-1"), service="gw").resource.attributes
    assert attributes["service.name"] == "foldflow-gateway"
    assert attributes["service.instance.id"] == "pod-7"
    assert attributes["deployment.environment.name"] == "prod"


def test_without_an_exporter_spans_are_not_recorded_but_ids_and_flags_travel() -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    tracer = build_provider(_settings(), service="worker").get_tracer("t")
    upstream = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    parent = trace.set_span_in_context(NonRecordingSpan(upstream))
    with tracer.start_as_current_span("process", context=parent) as span:
        assert not span.is_recording()
        ctx = span.get_span_context()
        assert (ctx.trace_id, ctx.trace_flags.sampled) == (0xABC, True)
        assert ctx.span_id not in (0, 0xDEF)  # a hop of its own in the trace
        headers = tracing.inject_headers()
    assert dict(headers)["traceparent"].decode().split("-")[1] == f"{0xABC:032x}"
    with tracer.start_as_current_span("root") as root:
        assert not root.is_recording() and root.get_span_context().is_valid


def test_once_something_collects_spans_they_are_recorded() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = build_provider(_settings(), service="worker")
    tracer = provider.get_tracer("t")  # taken before the collector is added
    collected = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    with tracer.start_as_current_span("kept") as span:
        assert span.is_recording()
    assert [s.name for s in collected.get_finished_spans()] == ["kept"]


def test_without_an_exporter_a_record_hop_forwards_the_context_it_came_with() -> None:
    # No span of its own: what the hop produces carries the producer's traceparent as it
    # came, so a service further on that exports parents its spans on a span that exists.
    tracer = build_provider(_settings(), service="worker").get_tracer("t")
    assert not tracing.spans_seen(tracer)
    came = [("traceparent", b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01")]
    with tracing.consuming(tracer, topic="wf.tasks.x", partition=0, offset=7, headers=came,
                           group="g") as span:  # fmt: skip
        assert not span.is_recording()
        with tracing.producing(tracer, topic="wf.results"):
            assert tracing.inject_headers() == came
    with tracing.consuming(tracer, topic="wf.tasks.x", partition=0, offset=8, headers=None,
                           group="g") as span:  # fmt: skip
        assert span.get_span_context().is_valid  # no context came: a trace of its own


def test_spans_are_seen_once_a_processor_is_added_and_through_a_proxy_tracer() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NoOpTracer, ProxyTracer

    provider = build_provider(_settings(), service="worker")
    proxy = ProxyTracer("t")
    proxy._real_tracer = provider.get_tracer("t")  # what the global provider hands out
    assert not tracing.spans_seen(proxy)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert tracing.spans_seen(proxy)
    assert tracing.spans_seen(NoOpTracer())  # not ours: it decides for itself
