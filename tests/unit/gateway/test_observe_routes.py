"""The HTTP metrics label requests by route template; a long-poll is told apart."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.observe import ObserveMiddleware


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
