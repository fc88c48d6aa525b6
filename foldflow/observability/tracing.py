"""OpenTelemetry setup and W3C trace context over Kafka headers.

Configuration is the OpenTelemetry SDK's own: ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` (``grpc`` or ``http/protobuf``),
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``HEADERS``/``TIMEOUT``/``COMPRESSION``/
``CERTIFICATE``, ``OTEL_BSP_*`` and ``OTEL_SDK_DISABLED`` (docs/observability.md).

Every hop over Kafka gets two spans, named and attributed after the OpenTelemetry
messaging conventions (``messaging.system=kafka``, ``messaging.operation.type``/``name``,
destination, partition, offset, consumer group):

- :func:`producing` wraps one publish: a ``send <topic>`` PRODUCER span, child of the
  current span, whose context :func:`inject_headers` puts into that message's headers;
  :func:`delivered` ends it with the partition and offset the broker gave;
- :func:`consuming` wraps the handling of one record: a ``process <topic>`` CONSUMER span
  whose parent is the producer span carried by the record's headers.

So one trace runs gateway → command → orchestrator → task → worker → result →
orchestrator → event → projector. A service with no exporter makes no spans of its own
where it can help it: it passes on the context its records came with (:func:`spans_seen`).

Kafka headers are ``(str, bytes)`` tuples, as confluent-kafka and aiokafka give them; the
explicit inject/extract pair is used because the client libraries' auto-instrumentation
links consumer spans instead of parenting them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as semconv
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from foldflow.observability.identity import instance_name
from foldflow.settings import Settings

__all__ = [
    "TRACE_HEADERS",
    "Header",
    "Headers",
    "TracingConfigError",
    "build_provider",
    "configure_tracing",
    "consumer_attributes",
    "consuming",
    "delivered",
    "exporter_names",
    "extract_context",
    "forwarded",
    "header_list",
    "inject_headers",
    "link_from",
    "links_from",
    "producer_attributes",
    "producing",
    "spans_seen",
]

log = logging.getLogger(__name__)

#: A Kafka header as the clients give them; values may be missing (None) or already str.
Header = tuple[str, bytes | str | None]
#: Headers as confluent-kafka (list or dict) and aiokafka (list) give them.
Headers = Iterable[Header] | Mapping[str, bytes | str | None]


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable asks for something this process cannot do."""


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

# --- configuration -------------------------------------------------------------------------

_EXPORTERS_GROUP = "opentelemetry_traces_exporter"
#: OTLP protocol -> the entry point name the exporter package registers (as the SDK maps it).
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for, as entry point names.

    ``OTEL_TRACES_EXPORTER`` (comma-separated: ``otlp``, ``console``, ``none``, or any
    installed exporter's entry point name) chooses; ``otlp`` becomes ``otlp_proto_grpc`` or
    ``otlp_proto_http`` after ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (default ``grpc``, as the Python SDK does). Unset, it
    means ``otlp`` when an OTLP endpoint variable is set and ``none`` otherwise: a process
    nobody pointed at a collector does not try localhost:4317 forever.
    """
    env = os.environ if environ is None else environ
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        raw = "otlp" if any(env.get(v) for v in _ENDPOINT_VARIABLES) else "none"
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if "none" in names:
        return []
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()  # fmt: skip
    out: list[str] = []
    for name in names:
        if name == "otlp":
            if protocol not in _OTLP_BY_PROTOCOL:
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use one of "
                    f"{', '.join(sorted(_OTLP_BY_PROTOCOL))}"
                )
            name = _OTLP_BY_PROTOCOL[protocol]
        out.append(name)
    return out


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group=_EXPORTERS_GROUP, name=name)
    if not found:
        installed = sorted(ep.name for ep in entry_points(group=_EXPORTERS_GROUP))
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER asks for {name!r}, which is not installed "
            f"(installed: {', '.join(installed)})"
        )
    exporter_class = next(iter(found)).load()
    exporter: SpanExporter = exporter_class()  # reads its OTEL_EXPORTER_OTLP_* itself
    return exporter


def _resource(settings: Settings, service: str) -> Resource:
    """Our service name and instance id, under what OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES say (the operator's word wins)."""
    ours = Resource.create({"service.name": service,
                            "service.instance.id": instance_name(settings)})
    return ours.merge(OTELResourceDetector().detect())


class _UnseenSpansTracer(SdkTracer):
    """The SDK's tracer, except that a span nobody would see is not recorded.

    With no span processor on the provider (no exporter configured, nothing collecting) a
    recorded span (attributes, links, events, its end) is work for nobody. Instead it is a
    :class:`NonRecordingSpan` with a span id of its own in the parent's trace (or a new
    trace), the parent's flags kept: trace ids still reach logs and Kafka headers, and a
    service further on that exports still sees a sampled trace. Once a processor is added
    (an exporter, a test's collector), spans are recorded again.
    """

    def records(self) -> bool:
        """Whether a span processor is there to see the spans (the SDK's own list)."""
        return bool(self.span_processor._span_processors)

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> Span:
        if self.records():
            return super().start_span(name, context, *args, **kwargs)
        parent = trace.get_current_span(context).get_span_context()
        ids = self.id_generator
        if parent.is_valid:
            return NonRecordingSpan(SpanContext(
                parent.trace_id, ids.generate_span_id(), is_remote=False,
                trace_flags=parent.trace_flags, trace_state=parent.trace_state,
            ))  # fmt: skip
        return NonRecordingSpan(SpanContext(
            ids.generate_trace_id(), ids.generate_span_id(), is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        ))  # fmt: skip


def spans_seen(tracer: Tracer) -> bool:
    """Whether the spans of ``tracer`` are recorded for someone (False: no exporter or
    collector is configured, see :class:`_UnseenSpansTracer`). The hot paths skip the work
    that only a recorded span needs (attributes, links, spans made after the fact), and a
    record's hop forwards the context it came with instead of starting a span of its own."""
    real = getattr(tracer, "_tracer", tracer)  # a ProxyTracer's tracer, once there is one
    return not isinstance(real, _UnseenSpansTracer) or real.records()


class _Provider(TracerProvider):
    """A TracerProvider whose tracers skip the spans nobody would see (see
    :class:`_UnseenSpansTracer`)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if type(tracer) is SdkTracer:  # the same object, made to skip unseen spans
            tracer.__class__ = _UnseenSpansTracer
        return tracer


def build_provider(settings: Settings, *, service: str) -> TracerProvider:
    """A TracerProvider configured from the environment (not installed; see
    :func:`configure_tracing`).

    The exporters come from the standard ``OTEL_*`` variables (:func:`exporter_names`);
    ``FOLDFLOW_OTLP_ENDPOINT`` (an OTLP/HTTP base URL such as ``http://127.0.0.1:4318``)
    still works and adds an OTLP/HTTP exporter when no ``OTEL_*`` exporter is configured.
    The sampler (``OTEL_TRACES_SAMPLER``), the span limits and the batch processors'
    ``OTEL_BSP_*`` are the SDK's own reading of the environment.
    """
    provider = _Provider(resource=_resource(settings, service))
    names = exporter_names()
    exporters = [_exporter(name) for name in names]
    if not exporters and settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter(endpoint=_traces_url(settings.otlp_endpoint)))
        names = ["otlp_proto_http"]
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if names:
        log.info("exporting spans", extra={"exporters": names})
    return provider


def configure_tracing(settings: Settings, *, service: str) -> TracerProvider:
    """Install the process's TracerProvider (once; later calls return the first one).

    Without an exporter configured, spans still carry ids into logs and Kafka headers but
    go nowhere. Raises :class:`TracingConfigError` for an exporter or protocol that cannot
    be had, so a misconfigured service fails at start instead of dropping its spans.
    """
    global _provider
    if _provider is not None:
        return _provider
    provider = build_provider(settings, service=service)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


# --- context over headers ------------------------------------------------------------------


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

    Use it as the parent of the span that handles the message (or use :func:`consuming`).
    """
    carrier: dict[str, str] = {}
    for name, value in _items(headers):
        if name in TRACE_HEADERS and value is not None:
            carrier[name] = value if isinstance(value, str) else value.decode("latin-1")
    base = context if context is not None else otel_context.get_current()
    return _PROPAGATOR.extract(carrier, context=base)


def forwarded(tracer: Tracer, headers: Headers | None) -> Span | None:
    """The span a record's headers carry, when nobody sees the spans of ``tracer``
    (:func:`spans_seen`): the hop handling the record makes it current as it is, so what
    it produces carries the same context on. None when spans are seen or the record
    carries no context: the hop starts a span of its own."""
    if spans_seen(tracer):
        return None
    carried = trace.get_current_span(extract_context(headers, context=Context()))
    return carried if carried.get_span_context().is_valid else None


def link_from(headers: Headers | None, **attributes: Any) -> Link | None:
    """A span link to the span that produced a record (None when it carries no context)."""
    span_context = trace.get_current_span(extract_context(headers, context=Context()))
    ctx = span_context.get_span_context()
    return Link(ctx, attributes or None) if ctx.is_valid else None


def links_from(headers: Iterable[Headers | None]) -> list[Link]:
    """Links to the producers of several records (one per distinct span): the causes of a
    message that has more than one, or the records of one batch."""
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for one in headers:
        link = link_from(one)
        if link is None:
            continue
        key = (link.context.trace_id, link.context.span_id)
        if key not in seen:
            seen.add(key)
            links.append(link)
    return links


# --- messaging spans -----------------------------------------------------------------------

_KAFKA = "kafka"


def _key_text(key: str | bytes | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None  # no canonical text form: the convention says leave it out
    return key


def producer_attributes(
    *, topic: str, key: str | bytes | None = None, message_id: str | None = None,
    conversation_id: str | None = None, body_size: int | None = None,
) -> dict[str, Any]:
    """Messaging attributes of a ``send`` span."""
    attributes: dict[str, Any] = {
        semconv.MESSAGING_SYSTEM: _KAFKA,
        semconv.MESSAGING_OPERATION_TYPE: "send",
        semconv.MESSAGING_OPERATION_NAME: "send",
        semconv.MESSAGING_DESTINATION_NAME: topic,
    }
    optional = {
        semconv.MESSAGING_KAFKA_MESSAGE_KEY: _key_text(key),
        semconv.MESSAGING_MESSAGE_ID: message_id,
        semconv.MESSAGING_MESSAGE_CONVERSATION_ID: conversation_id,
        semconv.MESSAGING_MESSAGE_BODY_SIZE: body_size,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


def consumer_attributes(
    *, topic: str, partition: int, offset: int, group: str | None,
    key: str | bytes | None = None, message_id: str | None = None,
    conversation_id: str | None = None, body_size: int | None = None,
) -> dict[str, Any]:
    """Messaging attributes of a ``process`` span for one record."""
    attributes: dict[str, Any] = {
        semconv.MESSAGING_SYSTEM: _KAFKA,
        semconv.MESSAGING_OPERATION_TYPE: "process",
        semconv.MESSAGING_OPERATION_NAME: "process",
        semconv.MESSAGING_DESTINATION_NAME: topic,
        semconv.MESSAGING_DESTINATION_PARTITION_ID: str(partition),
        semconv.MESSAGING_KAFKA_OFFSET: offset,
    }
    optional = {
        semconv.MESSAGING_CONSUMER_GROUP_NAME: group,
        semconv.MESSAGING_KAFKA_MESSAGE_KEY: _key_text(key),
        semconv.MESSAGING_MESSAGE_ID: message_id,
        semconv.MESSAGING_MESSAGE_CONVERSATION_ID: conversation_id,
        semconv.MESSAGING_MESSAGE_BODY_SIZE: body_size,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


@contextmanager
def consuming(
    tracer: Tracer,
    *,
    topic: str,
    partition: int,
    offset: int,
    headers: Headers | None,
    group: str | None,
    key: str | bytes | None = None,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    start_time: int | None = None,
    end_on_exit: bool = True,
) -> Iterator[Span]:
    """The current ``process <topic>`` CONSUMER span of one record, child of the span that
    produced it (from the record's headers); records the exception that escapes it.

    When nobody sees the spans (:func:`spans_seen`), the producer's span carried by the
    headers is made current as it is: what this hop produces carries the same context on.
    """
    carried = forwarded(tracer, headers)
    if carried is not None:
        with trace.use_span(carried, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):  # fmt: skip
            yield carried
        return
    with tracer.start_as_current_span(
        f"process {topic}",
        context=extract_context(headers, context=Context()),
        kind=SpanKind.CONSUMER,
        attributes={
            **consumer_attributes(topic=topic, partition=partition, offset=offset,
                                  group=group, key=key),
            **(attributes or {}),
        },
        links=links,
        start_time=start_time,
        end_on_exit=end_on_exit,
    ) as span:
        yield span


@contextmanager
def producing(
    tracer: Tracer,
    *,
    topic: str,
    key: str | bytes | None = None,
    message_id: str | None = None,
    conversation_id: str | None = None,
    body_size: int | None = None,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
    headers: Headers | None = None,
) -> Iterator[Span]:
    """A ``send <topic>`` PRODUCER span, current inside so that :func:`inject_headers` puts
    *its* context into the message's headers.

    Its parent is the current span or, when none is active, the context the message's own
    ``headers`` already carry (a record re-published as it was, e.g. a DLQ replay, stays in
    its trace). The span is not ended on exit: it lasts until the broker's answer, so hand it
    to :func:`delivered` from the delivery report (an exception inside ends it as an error).
    ``links`` name further causes of the message besides its parent.
    """
    parent = None
    current = trace.get_current_span()
    if not current.get_span_context().is_valid:
        if headers is not None:
            parent = extract_context(headers)
    elif not spans_seen(tracer):  # the context this hop was given goes on as it is
        yield current
        return
    span = tracer.start_span(
        f"send {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            **producer_attributes(topic=topic, key=key, message_id=message_id,
                                  conversation_id=conversation_id, body_size=body_size),
            **(attributes or {}),
        },
        links=links,
    )
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield span
    except BaseException as exc:
        delivered(span, error=exc)
        raise


def delivered(
    span: Span, *, partition: int | None = None, offset: int | None = None,
    error: BaseException | str | None = None,
) -> None:
    """End a :func:`producing` span with the broker's answer (thread-safe, idempotent)."""
    if not span.is_recording():
        return
    if error is None:
        if partition is not None:
            span.set_attribute(semconv.MESSAGING_DESTINATION_PARTITION_ID, str(partition))
        if offset is not None:
            span.set_attribute(semconv.MESSAGING_KAFKA_OFFSET, offset)
    else:
        if isinstance(error, BaseException):
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
        else:
            span.set_attribute("error.type", "delivery_failed")
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()
