"""The start path under concurrency, against the real broker and database.

- ``foldflow run gateway --workers 2`` driven by :mod:`foldflow.bench.http_load`: every 202 is a
  distinct start command on ``wf.commands`` (a 202 means acked), and ``/metrics`` counts
  the requests of both workers;
- a burst of first requests with one valid key shares one lookup (no 429);
- a start after a registration's 201 runs the new version on another gateway, whatever
  that gateway remembered of the definition.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import DEFINITION, TopicLog, bearer, eventually, key_lookups
from sqlalchemy import Engine

from foldflow.bench.gateway_phase import gateway_env
from foldflow.bench.http_load import LoadSpec, run_load
from foldflow.bench.services import free_port
from foldflow.gateway.app import create_app
from foldflow.gateway.keys import SCOPES, create_api_key, issue_api_key
from foldflow.producers import Publisher
from foldflow.schemas.messages import StartWorkflow, workflow_key
from foldflow.settings import Settings

pytestmark = pytest.mark.usefixtures("projector")

REPO = Path(__file__).resolve().parents[3]


@asynccontextmanager
async def _gateway(
    settings: Settings, publisher: Publisher, engine: Engine, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=changes), publisher=publisher, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as http:  # fmt: skip
        yield http


async def _register(http: httpx.AsyncClient, key: str, name: str, version: int) -> None:
    body = {**DEFINITION, "name": name, "version": version}
    registered = await http.post("/v1/definitions", json=body, headers=bearer(key))
    assert registered.status_code == 201, registered.text


@contextmanager
def _served_gateway(settings: Settings, key: str, *, workers: int) -> Iterator[str]:
    """``foldflow run gateway --workers N`` on the module's topics and database."""
    port = free_port()
    env = gateway_env({
        "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FOLDFLOW_PARTITIONS": str(settings.partitions),
        "FOLDFLOW_DATABASE_URL": settings.database_url,
    }, key=key, port=port, workers=workers)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "foldflow.cli.main", "run", "gateway"],
        env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.2)
        else:
            raise AssertionError("the gateway did not become ready")
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=60)


async def test_every_202_of_a_concurrent_load_is_a_distinct_command_on_the_topic(
    gw_settings: Settings, gw_engine: Engine, client: httpx.AsyncClient, command_log: TopicLog
) -> None:
    definer = create_api_key(gw_engine, "default", SCOPES, "definer")
    name = f"load-{uuid.uuid4().hex[:8]}"
    await _register(client, definer, name, 1)
    key = "ffk_load_" + uuid.uuid4().hex
    with _served_gateway(gw_settings, key, workers=2) as url:
        report = await run_load(LoadSpec(url=url, key=key, definition=name, concurrency=32,
                                         duration=3.0, warmup=0.0))
        metrics = httpx.get(f"{url}/metrics", timeout=10).text

    statuses = Counter(report.by_status)
    assert set(statuses) == {"202"}, statuses
    accepted = report.accepted_ids
    assert accepted and len(set(accepted)) == len(accepted)
    starts = command_log.wait_for(
        lambda e: isinstance(e.payload, StartWorkflow) and e.payload.definition_name == name,
        count=len(accepted), timeout=60,
    )  # fmt: skip
    assert sorted(e.workflow_id for e, _ in starts) == sorted(accepted)  # no loss, no extra
    assert {e.payload.definition_version for e, _ in starts} == {1}  # type: ignore[union-attr]
    # /metrics is the sum over both workers, whichever answered the scrape
    line = next(line for line in metrics.splitlines() if line.startswith(
        'foldflow_http_requests_total{method="POST",route="/v1/workflows",status="202"}'))
    assert float(line.rsplit(" ", 1)[1]) == len(accepted)



async def test_a_burst_of_first_requests_with_a_valid_key_shares_one_lookup(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> None:
    _, key = issue_api_key(gw_engine, "hooli", ["workflows:read"], "burst")
    async with _gateway(gw_settings, gw_publisher, gw_engine,
                        gateway_auth_failure_limit="30/minute",
                        gateway_auth_failure_global_limit="300/minute") as http:  # fmt: skip
        with key_lookups(gw_engine) as lookups:
            burst = await asyncio.gather(*(
                http.get("/v1/workflows", headers=bearer(key)) for _ in range(64)
            ))  # fmt: skip
    assert Counter(r.status_code for r in burst) == {200: 64}
    assert len(lookups) == 1


async def test_a_start_after_a_201_runs_the_new_version_on_every_gateway(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine, command_log: TopicLog
) -> None:
    key = create_api_key(gw_engine, "acme", SCOPES, "two gateways")
    name = f"ryw-{uuid.uuid4().hex[:8]}"
    # Long enough that gateway A still remembers version 1 when B's registration is done,
    # however quickly the projector stores it.
    cache = {"gateway_definition_cache_s": 3.0}
    async with (
        _gateway(gw_settings, gw_publisher, gw_engine, **cache) as a,
        _gateway(gw_settings, gw_publisher, gw_engine, **cache) as b,
    ):
        await _register(a, key, name, 1)
        first = await a.post("/v1/workflows", json={"definition": name}, headers=bearer(key))
        assert first.status_code == 202  # A read (and remembers) version 1 as the latest
        await _register(b, key, name, 2)
        second = await a.post("/v1/workflows", json={"definition": name}, headers=bearer(key))
        assert second.status_code == 202
        seen = await eventually(lambda: a.get(f"/v1/definitions/{name}", headers=bearer(key)),
                                lambda r: r.status_code == 200)  # fmt: skip
        assert seen.json()["version"] == 2

    pinned = {
        e.workflow_id: e.payload.definition_version  # type: ignore[union-attr]
        for e, _ in command_log.wait_for(
            lambda e: isinstance(e.payload, StartWorkflow) and e.payload.definition_name == name,
            count=2,
        )
    }
    assert pinned == {workflow_key("acme", first.json()["id"]): 1,
                      workflow_key("acme", second.json()["id"]): 2}  # fmt: skip
