"""Spans reach a real OTLP receiver (Jaeger v2) over both OTLP protocols, configured by the
standard OTEL_* variables alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from observability_support import Jaeger, jaeger, jaeger_binary, wait_for

from foldflow.observability.tracing import build_provider
from foldflow.settings import Settings


@pytest.fixture(scope="module")
def receiver(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    binary = jaeger_binary(stack.cache_dir)
    if isinstance(binary, str):
        pytest.skip(binary)
    with jaeger(Path(binary), tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_reach_the_receiver_over_each_otlp_protocol(
    receiver: Jaeger, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = receiver.otlp_grpc if protocol == "grpc" else receiver.otlp_http
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", f"export-{protocol.replace('/', '-')}")
    provider = build_provider(Settings(_env_file=None), service="ignored")  # type: ignore[call-arg]
    with provider.get_tracer(__name__).start_as_current_span("exported") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert provider.force_flush(30_000)
    provider.shutdown()

    found = wait_for(lambda: receiver.trace(trace_id), timeout=60, what="the span in Jaeger")
    [sent] = found["spans"]
    assert sent["operationName"] == "exported"
    assert found["processes"][sent["processID"]]["serviceName"] == (
        f"export-{protocol.replace('/', '-')}")
