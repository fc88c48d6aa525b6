"""API keys against the real PostgreSQL: a flood of made-up keys costs the database a
bounded number of lookups and is answered 429; ``foldflow keys list|revoke`` as a person
runs them, with revocation reaching a running gateway."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import bearer, key_lookups
from sqlalchemy import Engine

from foldflow.gateway.app import create_app
from foldflow.gateway.keys import issue_api_key
from foldflow.producers import Publisher
from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[3]
FOLDFLOW = REPO / ".venv" / "bin" / "foldflow"



@asynccontextmanager
async def _gateway(
    settings: Settings, publisher: Publisher, engine: Engine, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=changes), publisher=publisher, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as http:  # fmt: skip
        yield http


async def test_a_flood_of_made_up_keys_gets_429_after_a_bounded_number_of_lookups(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> None:
    async with _gateway(gw_settings, gw_publisher, gw_engine,
                        gateway_auth_failure_limit="20/minute",
                        gateway_auth_failure_global_limit="1000/minute") as http:  # fmt: skip
        with key_lookups(gw_engine) as lookups:
            flood = await asyncio.gather(*(
                http.get("/v1/workflows", headers=bearer(f"ffk_made-up-{i}"))
                for i in range(140)
            ))  # fmt: skip
            again = [
                await http.get("/v1/workflows", headers=bearer("ffk_made-up-0")),
                await http.get("/v1/workflows", headers={"X-API-Key": "ffk_made-up-new"}),
            ]
    statuses = Counter(r.status_code for r in flood)
    assert statuses == {401: 20, 429: 120}, statuses
    assert len(lookups) == 20  # the first ones only: the rest cost the database nothing
    assert [r.status_code for r in again] == [429, 429]
    limited = next(r for r in flood if r.status_code == 429)
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["type"] == "urn:foldflow:problem:rate-limited"
    refused = next(r for r in flood if r.status_code == 401)
    assert refused.json()["detail"] == "unknown or revoked API key"


async def test_a_repeated_unknown_key_is_looked_up_once_per_cache_period(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> None:
    async with _gateway(gw_settings, gw_publisher, gw_engine, gateway_key_cache_s=60.0,
                        gateway_auth_failure_limit="1000/minute") as http:  # fmt: skip
        with key_lookups(gw_engine) as lookups:
            answers = [
                (await http.get("/v1/workflows", headers=bearer("ffk_same-wrong"))).status_code
                for _ in range(10)
            ]
    assert answers == [401] * 10 and len(lookups) == 1


def _foldflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOLDFLOW_DATABASE_URL": settings.database_url,
           "FOLDFLOW_GATEWAY_KEY_CACHE_S": "0.5"}  # fmt: skip
    return subprocess.run([str(FOLDFLOW), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)  # fmt: skip


async def test_keys_list_and_revoke_reach_a_running_gateway(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> None:
    key_id, key = issue_api_key(gw_engine, "hooli", ["workflows:read"], "dashboards")
    other_id, other = issue_api_key(gw_engine, "hooli", ["workflows:write"], "ci")

    async with _gateway(gw_settings, gw_publisher, gw_engine, gateway_key_cache_s=0.5) as http:
        assert (await http.get("/v1/workflows", headers=bearer(key))).status_code == 200

        listed = _foldflow(gw_settings, "keys", "list", "--tenant", "hooli", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["id"], r["name"], r["tenant"], r["scopes"]) for r in rows] == [
            (key_id, "dashboards", "hooli", ["workflows:read"]),
            (other_id, "ci", "hooli", ["workflows:write"]),
        ]  # fmt: skip
        assert rows[0]["last_used_at"] is not None and rows[1]["last_used_at"] is None
        assert rows[0]["revoked_at"] is None and rows[0]["created_at"]
        assert key not in listed.stdout and other not in listed.stdout
        assert "hash" not in rows[0]
        table = _foldflow(gw_settings, "keys", "list", "--tenant", "hooli")
        assert table.returncode == 0 and "dashboards" in table.stdout and key not in table.stdout

        revoked = _foldflow(gw_settings, "keys", "revoke", str(key_id))
        assert revoked.returncode == 0, revoked.stderr
        assert "within 0.5s" in revoked.stdout
        await asyncio.sleep(0.6)  # the gateway's cache of looked-up keys (0.5 s) forgets it
        refused = await http.get("/v1/workflows", headers=bearer(key))
        assert refused.status_code == 401
        assert refused.json()["detail"] == "unknown or revoked API key"

    after = json.loads(_foldflow(gw_settings, "keys", "list", "--tenant", "hooli", "--json").stdout)
    assert after[0]["revoked_at"] is not None and after[1]["revoked_at"] is None
    again = _foldflow(gw_settings, "keys", "revoke", str(key_id))
    assert again.returncode == 0  # revoking twice changes nothing
    missing = _foldflow(gw_settings, "keys", "revoke", "999999999")
    assert missing.returncode == 1 and "no key 999999999" in missing.stderr


async def test_without_a_cache_a_revoked_key_is_refused_at_once(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> None:
    key_id, key = issue_api_key(gw_engine, "hooli", ["workflows:read"], "short-lived")
    async with _gateway(gw_settings, gw_publisher, gw_engine, gateway_key_cache_s=0) as http:
        assert (await http.get("/v1/workflows", headers=bearer(key))).status_code == 200
        assert _foldflow(gw_settings, "keys", "revoke", str(key_id)).returncode == 0
        assert (await http.get("/v1/workflows", headers=bearer(key))).status_code == 401


@pytest.mark.parametrize("args", [["keys", "list", "--json"], ["keys", "list"]])
def test_keys_list_needs_a_migrated_database(gw_settings: Settings, args: list[str]) -> None:
    broken = gw_settings.model_copy(
        update={"database_url": gw_settings.database_url.rsplit("/", 1)[0] + "/no_such_db"}
    )
    done = _foldflow(broken, *args)
    assert done.returncode == 1 and "foldflow db upgrade" in done.stderr
