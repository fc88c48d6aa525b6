"""The HTTP metrics label requests by route template; a long-poll is told apart."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from foldflow.gateway import observe
from foldflow.gateway.observe import ObserveMiddleware


async def show(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["workflow_id"]})


def _count(route: str) -> float:
    labels = {"method": "GET", "route": route, "status": "200"}
    return REGISTRY.get_sample_value("foldflow_http_requests_total", labels) or 0.0


async def test_a_long_poll_has_its_own_route_label_and_a_plain_read_keeps_the_template() -> None:
    app = ObserveMiddleware(Starlette(routes=[Route("/t/{workflow_id}", show)]))
    template = "/t/{workflow_id}"
    before = _count(template), _count(f"{template}?wait_for")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/t/a")).status_code == 200
        assert (await http.get("/t/b?wait_for=terminal&timeout=1s")).status_code == 200
        assert (await http.get("/t/c?x=1&wait_for=completed")).status_code == 200
        assert (await http.get("/t/d?not_wait_for=1")).status_code == 200
    assert _count(template) - before[0] == 2
    assert _count(f"{template}?wait_for") - before[1] == 2


async def test_fastapis_own_server_span_is_the_requests_only_server_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind
    from starlette.middleware import Middleware

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # the middleware's own tracer records too: a second server span would show
    monkeypatch.setattr(observe, "_tracer", provider.get_tracer("test"))
    app = FastAPI(telemetry={"tracer_provider": provider},  # type: ignore[call-arg]
                  middleware=[Middleware(ObserveMiddleware)])

    @app.get("/t/{workflow_id}")
    async def read(workflow_id: str) -> dict[str, str]:
        return {"id": workflow_id}

    caller = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get("/t/x", headers={"traceparent": caller, "x-request-id": "r-1"})
    assert answer.status_code == 200

    servers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    [server] = servers
    assert format(server.context.trace_id, "032x") == "c" * 32
    assert (server.attributes or {})["foldflow.request_id"] == "r-1"
    assert (server.attributes or {})["http.route"] == "/t/{workflow_id}"
