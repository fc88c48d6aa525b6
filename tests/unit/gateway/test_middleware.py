"""Rate limit and body limit middleware around a tiny echo app (in process, no services)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.bodylimit import BodyLimitMiddleware
from gateway.ratelimit import RateLimitMiddleware


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_bodies_up_to_the_limit_pass_and_larger_ones_are_413() -> None:
    app = BodyLimitMiddleware(Starlette(routes=[Route("/", echo, methods=["POST"])]), max_bytes=10)

    async def stream(size: int) -> AsyncIterator[bytes]:
        for _ in range(size):
            yield b"x"

    async with _client(app) as http:
        exact = await http.post("/", content=b"x" * 10)
        declared = await http.post("/", content=b"x" * 11)
        streamed_ok = await http.post("/", content=stream(10))
        streamed_big = await http.post("/", content=stream(11))
        empty = await http.post("/")
    assert exact.json() == {"size": 10} and streamed_ok.json() == {"size": 10}
    assert empty.json() == {"size": 0}
    for refused in (declared, streamed_big):
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:foldflow:problem:body-too-large"


async def test_each_client_has_its_own_window_and_probes_are_free() -> None:
    inner = Starlette(routes=[Route("/", echo), Route("/healthz", echo)])
    app = RateLimitMiddleware(inner, rate="2/minute")
    async with _client(app) as http:
        a = [(await http.get("/", headers={"X-API-Key": "a"})).status_code for _ in range(3)]
        b = (await http.get("/", headers={"X-API-Key": "b"})).status_code
        anonymous = [(await http.get("/")).status_code for _ in range(3)]
        probes = {(await http.get("/healthz")).status_code for _ in range(5)}
        limited = await http.get("/", headers={"X-API-Key": "a"})
    assert a == [200, 200, 429] and b == 200
    assert anonymous == [200, 200, 429] and probes == {200}
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["status"] == 429


async def test_several_windows_all_apply() -> None:
    app = RateLimitMiddleware(Starlette(routes=[Route("/", echo)]), rate="5/minute;1/second")
    async with _client(app) as http:
        statuses = [(await http.get("/")).status_code for _ in range(2)]
    assert statuses == [200, 429]
