"""Rate limit and body limit middleware around a tiny echo app (in process, no services)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from foldflow.gateway.bodylimit import BodyLimitMiddleware
from foldflow.gateway.ratelimit import RateLimitMiddleware


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


async def test_json_bodies_no_downstream_can_store_are_422_before_the_app() -> None:
    from foldflow.gateway.jsonbody import JsonSafetyMiddleware

    app = JsonSafetyMiddleware(Starlette(routes=[Route("/", echo, methods=["POST"])]))
    json_type = {"content-type": "application/json"}
    big_and_bad = b'{"items": [' + b'"ok", ' * 20_000 + b'NaN]}'  # checked in a thread
    async with _client(app) as http:
        nan = await http.post("/", content=b'{"a": {"b": NaN}}', headers=json_type)
        problem_type = await http.post(
            "/", content=b'["\\u0000"]', headers={"content-type": "application/merge-patch+json"}
        )
        big = await http.post("/", content=big_and_bad, headers=json_type)
        malformed = await http.post("/", content=b'{"a": ', headers=json_type)
        not_json = await http.post("/", content=b"NaN", headers={"content-type": "text/plain"})
        fine = await http.post("/", content=b'{"a": [1.5, "\\ud83d\\ude00"]}', headers=json_type)
    assert nan.status_code == 422 and nan.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in nan.json()["errors"]] == ["body.a.b"]
    assert problem_type.status_code == 422
    assert big.status_code == 422
    assert big.json()["errors"][0]["location"] == "body.items[20000]"
    # what is not JSON, or not checkable, reaches the app untouched (FastAPI answers it)
    assert malformed.json() == {"size": 6} and not_json.json() == {"size": 3}
    assert fine.status_code == 200
