"""Rate and body limits, problem+json for every kind of error, 503s naming the dependency
that is down, probes, metrics and the access log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_support import DEFINITION, EventWriter, Keys, bearer, new_id
from sqlalchemy import Engine

from foldflow.gateway.app import create_app
from foldflow.gateway.db import make_engine
from foldflow.producers import Publisher
from foldflow.settings import ConfiguredApiKey, Settings

pytestmark = pytest.mark.usefixtures("projector")

PROBLEM = "application/problem+json"
NOWHERE = "127.0.0.1:1"  # nothing listens there


async def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                             base_url="http://gateway")  # fmt: skip


async def test_a_burst_is_answered_429_with_retry_after(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine, keys: Keys
) -> None:
    settings = gw_settings.model_copy(update={"gateway_rate_limit": "3/minute"})
    app = create_app(settings, publisher=gw_publisher, engine=gw_engine)
    async with await _client(app) as http:
        statuses = [
            (await http.get("/v1/workflows", headers=bearer(keys.acme))).status_code
            for _ in range(3)
        ]
        limited = await http.get("/v1/workflows", headers=bearer(keys.acme))
        other_client = await http.get("/v1/workflows", headers=bearer(keys.globex))
        probe = await http.get("/healthz")

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["type"] == "urn:foldflow:problem:rate-limited"
    assert other_client.status_code == 200  # limits are per client
    assert probe.status_code == 200  # probes are not limited


async def test_an_oversized_body_is_413_declared_or_streamed(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine, keys: Keys
) -> None:
    settings = gw_settings.model_copy(update={"gateway_max_body_bytes": 1024})
    app = create_app(settings, publisher=gw_publisher, engine=gw_engine)
    big = {**DEFINITION, "description": "x" * 2048}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b'{"padding": "' + b"y" * 400 + b'"}'

    async with await _client(app) as http:
        declared = await http.post("/v1/definitions", json=big, headers=bearer(keys.acme))
        streamed = await http.post("/v1/workflows", content=chunks(),
                                   headers={**bearer(keys.acme),
                                            "content-type": "application/json"})  # fmt: skip
        small = await http.post("/v1/workflows", json={"definition": "never-registered"},
                                headers=bearer(keys.acme))  # fmt: skip
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 413
    assert small.status_code == 422  # under the limit, the request goes through


async def test_malformed_bodies_are_4xx_problems_listing_every_field(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    not_json = await client.post("/v1/workflows", content=b"{nope",
                                 headers={**bearer(keys.acme),
                                          "content-type": "application/json"})  # fmt: skip
    assert not_json.status_code == 422 and not_json.headers["content-type"] == PROBLEM
    assert not_json.json()["errors"][0]["message"].startswith("invalid JSON")

    invalid = await client.post(
        "/v1/workflows", json={"definition": 5, "version": 0, "surprise": True},
        headers=bearer(keys.acme),
    )  # fmt: skip
    assert invalid.status_code == 422
    locations = {e["location"] for e in invalid.json()["errors"]}
    assert locations == {"body.definition", "body.version", "body.surprise"}

    bad_query = await client.get("/v1/workflows", params={"limit": 0, "status": "sleeping"},
                                 headers=bearer(keys.acme))  # fmt: skip
    assert {e["location"] for e in bad_query.json()["errors"]} == {"query.limit", "query.status.0"}

    wrong_type = await client.post("/v1/workflows", content=b"definition=x",
                                   headers={**bearer(keys.acme),
                                            "content-type": "text/plain"})  # fmt: skip
    assert wrong_type.status_code == 415 and wrong_type.headers["content-type"] == PROBLEM

    no_route = await client.get("/v2/nothing", headers=bearer(keys.acme))
    assert no_route.status_code == 404 and no_route.headers["content-type"] == PROBLEM
    wrong_method = await client.delete("/v1/workflows", headers=bearer(keys.acme))
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == PROBLEM
    assert "GET" in wrong_method.headers["allow"]
    assert wrong_method.json() == {"type": "about:blank", "title": "Method Not Allowed",
                                   "status": 405, "instance": "/v1/workflows"}  # fmt: skip


async def test_kafka_down_is_503_naming_kafka(
    gw_settings: Settings, gw_engine: Engine, keys: Keys, events: EventWriter,
    client: httpx.AsyncClient,
) -> None:  # fmt: skip
    workflow_id = new_id("nokafka")
    events.start(workflow_id, tenant="acme")
    running = await client.get(f"/v1/workflows/{workflow_id}", headers=bearer(keys.acme),
                               params={"wait_for": "running", "timeout": "20s"})  # fmt: skip
    assert running.json()["status"] == "running"
    settings = gw_settings.model_copy(update={
        "kafka_bootstrap": NOWHERE, "publish_timeout_ms": 1500, "gateway_kafka_timeout_s": 1.0,
    })  # fmt: skip
    with Publisher(settings, source="gateway-nokafka") as dead:
        app = create_app(settings, publisher=dead, engine=gw_engine)
        async with await _client(app) as http:
            refused = await http.post(f"/v1/workflows/{workflow_id}/cancel",
                                      headers=bearer(keys.acme))  # fmt: skip
            ready = await http.get("/readyz")
    assert refused.status_code == 503 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["dependency"] == "kafka"
    assert "retry-after" in refused.headers
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka"]["ok"] is False
    assert ready.json()["checks"]["postgresql"]["ok"] is True
    assert ready.json()["dependency"] == "kafka"


async def test_postgresql_down_is_503_naming_postgresql(
    gw_settings: Settings, gw_publisher: Publisher
) -> None:
    settings = gw_settings.model_copy(update={
        "database_url": f"postgresql+psycopg://foldflow:foldflow@{NOWHERE}/foldflow",
        "gateway_db_timeout_s": 1.0,
        "api_keys": (ConfiguredApiKey(tenant="acme", scopes=("workflows:read",), key="k-1"),),
    })  # fmt: skip
    engine = make_engine(settings.database_url, timeout_s=1.0)
    try:
        app = create_app(settings, publisher=gw_publisher, engine=engine)
        async with await _client(app) as http:
            listed = await http.get("/v1/workflows", headers=bearer("k-1"))
            stored_key = await http.get("/v1/workflows", headers=bearer("ffk_needs-the-db"))
            ready = await http.get("/readyz")
    finally:
        engine.dispose()
    for response in (listed, stored_key):
        assert response.status_code == 503 and response.headers["content-type"] == PROBLEM
        assert response.json()["dependency"] == "postgresql"
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgresql"]["ok"] is False
    assert ready.json()["checks"]["kafka"]["ok"] is True


async def test_probes_metrics_and_access_log(
    client: httpx.AsyncClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {n: c["ok"] for n, c in ready.json()["checks"].items()} == {
        "kafka": True, "postgresql": True,
    }  # fmt: skip

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with caplog.at_level(logging.INFO, logger="foldflow.gateway.access"):
        missing = await client.get(
            f"/v1/workflows/{new_id()}",
            headers={**bearer(keys.acme), "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
                     "X-Request-ID": "req-12345"},
        )  # fmt: skip
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "req-12345"
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "req-12345"]
    assert record.trace_id == trace_id  # type: ignore[attr-defined]
    assert record.route == "/v1/workflows/{workflow_id}"  # type: ignore[attr-defined]
    assert record.status == 404 and record.tenant == "acme"  # type: ignore[attr-defined]

    metrics = (await client.get("/metrics")).text
    assert (
        'foldflow_http_requests_total{method="GET",route="/v1/workflows/{workflow_id}",'
        'status="404"}' in metrics
    )
    assert any(
        line.startswith("foldflow_http_request_duration_seconds_count{")
        and 'route="/v1/workflows/{workflow_id}"' in line
        for line in metrics.splitlines()
    )
    assert 'route="/v2/nothing"' not in metrics  # raw paths never become labels
