"""OpenTelemetry setup and W3C trace context over Kafka headers.

Kafka headers are ``(str, bytes)`` tuples, as confluent-kafka and aiokafka give them. The
explicit :func:`inject_headers` / :func:`extract_context` pair keeps one trace one trace
across gateway -> orchestrator -> worker -> projector, which the client libraries'
auto-instrumentation does not (it links consumer spans instead of parenting them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from foldflow.observability.identity import instance_name
from foldflow.settings import Settings

__all__ = [
    "TRACE_HEADERS",
    "Header",
    "Headers",
    "configure_tracing",
    "extract_context",
    "header_list",
    "inject_headers",
]

#: A Kafka header as the clients give them; values may be missing (None) or already str.
Header = tuple[str, bytes | str | None]
#: Headers as confluent-kafka (list or dict) and aiokafka (list) give them.
Headers = Iterable[Header] | Mapping[str, bytes | str | None]


def _items(headers: Headers | None) -> Iterable[Header]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def header_list(headers: Headers | None) -> list[tuple[str, bytes]]:
    """Headers in any client's shape as a ``[(name, bytes)]`` list (None becomes ``b""``)."""
    out: list[tuple[str, bytes]] = []
    for name, value in _items(headers):
        if value is None:
            value = b""
        out.append((name, value.encode() if isinstance(value, str) else value))
    return out

_PROPAGATOR = TraceContextTextMapPropagator()
#: The header names the W3C TraceContext propagator reads and writes.
TRACE_HEADERS = frozenset(_PROPAGATOR.fields)

_provider: TracerProvider | None = None


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def configure_tracing(settings: Settings, *, service: str) -> TracerProvider:
    """Install the process's TracerProvider (once; later calls return the first one).

    Spans are exported over OTLP/HTTP only when ``settings.otlp_endpoint`` is set (a base
    URL such as ``http://127.0.0.1:4318`` or the full ``.../v1/traces``); without it spans
    still carry ids into logs and Kafka headers but go nowhere.
    """
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create(
        {"service.name": service, "service.instance.id": instance_name(settings)}
    )
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=_traces_url(settings.otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def inject_headers(
    headers: Headers | None = None, *, context: Context | None = None
) -> list[tuple[str, bytes]]:
    """``headers`` plus ``traceparent``/``tracestate`` of the current (or given) context.

    Existing trace headers are replaced; with no active span nothing is added. Values come
    back as bytes, ready for ``Producer.produce(headers=...)``.
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    out = [h for h in header_list(headers) if not (carrier and h[0] in TRACE_HEADERS)]
    out.extend((name, value.encode()) for name, value in carrier.items())
    return out


def extract_context(headers: Headers | None, *, context: Context | None = None) -> Context:
    """The trace context carried by Kafka headers, on top of ``context`` (default: current).

    Use it as the parent of the span that handles the message::

        with tracer.start_as_current_span("handle", context=extract_context(msg.headers())):
            ...
    """
    carrier: dict[str, str] = {}
    for name, value in _items(headers):
        if name in TRACE_HEADERS and value is not None:
            carrier[name] = value if isinstance(value, str) else value.decode("latin-1")
    base = context if context is not None else otel_context.get_current()
    return _PROPAGATOR.extract(carrier, context=base)
