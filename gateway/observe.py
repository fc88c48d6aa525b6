"""Per-request observability: request id, one server span, RED metrics, a JSON access log.

The server span is FastAPI's own when its telemetry runs (it then wraps this middleware),
else one of ours. The span is current while the route runs, so the Publisher's ``send``
span is its descendant and the trace continues in the orchestrator. Metrics are
labelled by route *template* (``/v1/workflows/{workflow_id}``), never by raw path; an
unmatched path counts as ``unmatched``. A read that long-polls (``?wait_for=``) is labelled
``<template>?wait_for``: it waits on purpose, so the latency objective leaves it out.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foldflow.observability.logging import bind
from foldflow.observability.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

__all__ = ["REQUEST_ID_HEADER", "ObserveMiddleware", "metric_route", "route_template"]

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger("foldflow.gateway.access")
_tracer = trace.get_tracer("foldflow.gateway")


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (or ``unmatched``)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None)  # "{workflow_id}", also for "{workflow_id:path}"
    return path if isinstance(path, str) else "unmatched"


_LONG_POLL = re.compile(rb"(^|&)wait_for=")


def metric_route(scope: Scope) -> str:
    """The ``route`` label of the HTTP metrics: the template, marked when it long-polls."""
    route = route_template(scope)
    if _LONG_POLL.search(scope.get("query_string", b"")):
        return f"{route}?wait_for"
    return route


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class ObserveMiddleware:
    """Outermost ASGI middleware of the gateway (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        # FastAPI's own telemetry may already run the request's server span around this
        # middleware: then that one is the request's span (one server span per request).
        framework = trace.get_current_span()
        own = not (framework.get_span_context().is_valid and framework.is_recording())
        with (
            bind(correlation_id=request_id),
            _tracer.start_as_current_span(
                f"{method} {scope['path']}",
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            ) if own else nullcontext(framework) as span,
        ):
            span.set_attribute("foldflow.request_id", request_id)
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = route_template(scope)
                elapsed = time.perf_counter() - started
                if own:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                labelled = metric_route(scope)
                HTTP_REQUESTS.labels(method=method, route=labelled, status=str(status)).inc()
                HTTP_REQUEST_DURATION.labels(method=method, route=labelled).observe(elapsed)
                ctx = span.get_span_context()
                fields: dict[str, Any] = {
                    "request_id": request_id,
                    "trace_id": format(ctx.trace_id, "032x"),
                    "span_id": format(ctx.span_id, "016x"),
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                    "tenant": scope["state"].get("tenant"),
                    "workflow_id": scope.get("path_params", {}).get("workflow_id"),
                }
                access_log.info("%s %s %s", method, scope["path"], status, extra=fields)
