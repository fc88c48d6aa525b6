"""Security headers on every response of the gateway app (in process, no services needed:
the requests here never reach Kafka or PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from foldflow.gateway.app import create_app
from foldflow.gateway.headers import API_CSP, SecurityHeadersMiddleware
from foldflow.producers import Publisher
from foldflow.settings import Settings

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(gateway_rate_limit="4/minute", gateway_hsts_max_age_s=0)
    with Publisher(settings, source="unit-headers") as publisher:
        app = create_app(settings, publisher=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client


def _assert_secure(response: httpx.Response, *, csp: str = API_CSP) -> None:
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, (name, response.request.url)
    assert response.headers["content-security-policy"] == csp
    assert "frame-ancestors 'none'" in csp
    assert "strict-transport-security" not in response.headers


async def test_every_kind_of_answer_carries_the_headers(http: httpx.AsyncClient) -> None:
    answers = [
        await http.get("/healthz"),
        await http.get("/openapi.json"),
        await http.get("/v1/workflows"),  # 401 from the route
        await http.get("/no-such-page"),  # 404 from the router
        await http.delete("/v1/workflows"),  # 405
    ]
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 405]
    for answer in answers:
        _assert_secure(answer)
    for _ in range(2):  # four answers so far: the rate limiter answers itself now
        limited = await http.get("/v1/definitions")
    assert limited.status_code == 429
    _assert_secure(limited)


async def test_answers_to_credentialed_requests_are_not_stored(http: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
        answer = await http.get("/healthz", headers=headers)
        assert answer.headers["cache-control"] == "no-store"
    assert "cache-control" not in (await http.get("/healthz")).headers


async def test_the_docs_allow_swagger_ui_and_its_own_inline_script_only(
    http: httpx.AsyncClient,
) -> None:
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    policy = docs.headers["content-security-policy"]
    [inline] = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    script_src = next(p for p in policy.split(";") if p.strip().startswith("script-src"))
    assert script_src.split()[1:] == ["https://cdn.jsdelivr.net", f"'sha256-{digest}'"]
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    for name, value in ALWAYS.items():
        assert docs.headers[name] == value


async def test_hsts_is_sent_when_set() -> None:
    settings = Settings(gateway_hsts_max_age_s=31_536_000)
    with Publisher(settings, source="unit-headers") as publisher:
        app = create_app(settings, publisher=publisher)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="https://gw") as client:  # fmt: skip
            answer = await client.get("/healthz")
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_a_prefix_may_bring_its_own_policy() -> None:
    async def page(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    inner = Starlette(routes=[Route("/ui/x", page), Route("/uix", page), Route("/v1/x", page)])
    app = SecurityHeadersMiddleware(
        inner, csp_by_prefix={"/ui": "default-src 'self'", "/ui/x": "default-src 'none'"}
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:  # fmt: skip
        policies = [
            (await client.get(path)).headers["content-security-policy"]
            for path in ("/ui/x", "/uix", "/v1/x")
        ]
    assert policies == ["default-src 'none'", API_CSP, API_CSP]
