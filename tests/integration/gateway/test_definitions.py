"""POST/GET /v1/definitions against the real broker, projector and database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from gateway_support import DEFINITION, Keys, TopicLog, bearer, eventually

from foldflow.schemas.messages import DefinitionRegistered

pytestmark = pytest.mark.usefixtures("projector")


def _definition(**changes: Any) -> dict[str, Any]:
    return {**DEFINITION, "name": f"order-{uuid.uuid4().hex[:8]}", **changes}


async def test_register_publishes_the_caller_tenant_definition_then_reads_it_back(
    client: httpx.AsyncClient, keys: Keys, definition_log: TopicLog
) -> None:
    body = _definition(version=3)
    name = body["name"]

    created = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))

    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/definitions/{name}/3"
    assert created.json()["name"] == name and created.json()["version"] == 3
    [(envelope, headers)] = definition_log.wait_for(
        lambda e: isinstance(e.payload, DefinitionRegistered) and e.payload.name == name
    )
    assert envelope.workflow_id == f"acme/{name}:3"  # the record key: the tenant's namespace
    assert isinstance(envelope.payload, DefinitionRegistered)
    assert envelope.payload.tenant == "acme" and envelope.tenant == "acme"
    assert headers["event_type"] == b"definition.registered.v1"

    one = await eventually(  # the projector folds it in shortly; GET does not wait
        lambda: client.get(f"/v1/definitions/{name}/3", headers=bearer(keys.acme_read)),
        lambda r: r.status_code == 200,
    )
    assert one.status_code == 200, one.text
    assert one.json()["definition"]["steps"][0]["id"] == "charge"
    latest = await client.get(f"/v1/definitions/{name}", headers=bearer(keys.acme_read))
    assert latest.json()["version"] == 3
    listed = await client.get("/v1/definitions", headers=bearer(keys.acme_read))
    assert [(d["name"], d["version"]) for d in listed.json()["items"] if d["name"] == name] == [
        (name, 3)
    ]


async def test_an_invalid_definition_is_refused_listing_every_problem(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = {
        "name": "broken",
        "steps": [
            {"id": "a", "task": "builtin.echo", "after": ["b"]},
            {"id": "b", "task": "builtin.echo", "after": ["a"]},
            {"id": "c", "task": "builtin.echo", "after": ["nope"], "bogus": 1},
        ],
    }
    refused = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "urn:foldflow:problem:invalid-definition"
    locations = {e["location"] for e in problem["errors"]}
    assert "body.steps[2].bogus" in locations
    assert any("nope" in e["message"] for e in problem["errors"])
    assert any("cycle" in e["message"] for e in problem["errors"])


async def test_reregistering_is_idempotent_and_other_content_conflicts(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = _definition()
    first = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))
    assert first.status_code == 201
    await eventually(  # once the projector has it, a repeat is recognised
        lambda: client.get(f"/v1/definitions/{body['name']}/1", headers=bearer(keys.acme)),
        lambda r: r.status_code == 200,
    )
    again = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))
    assert again.status_code == 200, again.text

    changed = {**body, "description": "something else"}
    conflict = await client.post("/v1/definitions", json=changed, headers=bearer(keys.acme))
    assert conflict.status_code == 409
    assert conflict.json()["type"] == "urn:foldflow:problem:definition-exists"



async def test_tenants_register_the_same_name_and_version_independently(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = _definition()
    name = body["name"]
    first = await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))
    assert first.status_code == 201
    await eventually(
        lambda: client.get(f"/v1/definitions/{name}/1", headers=bearer(keys.acme)),
        lambda r: r.status_code == 200,
    )

    theirs = {**body, "description": "globex's own"}  # other content, same name:version
    other_tenant = await client.post("/v1/definitions", json=theirs, headers=bearer(keys.globex))
    assert other_tenant.status_code == 201, other_tenant.text  # no cross-tenant 409
    assert "acme" not in other_tenant.text
    read = await eventually(
        lambda: client.get(f"/v1/definitions/{name}/1", headers=bearer(keys.globex)),
        lambda r: r.status_code == 200,
    )
    assert read.json()["definition"].get("description") == "globex's own"
    mine = await client.get(f"/v1/definitions/{name}/1", headers=bearer(keys.acme))
    assert mine.json()["definition"].get("description") != "globex's own"
    again = await client.post("/v1/definitions", json=theirs, headers=bearer(keys.globex))
    assert again.status_code == 200  # idempotent within globex's namespace


async def test_another_tenants_definition_is_not_found(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = _definition()
    assert (await client.post("/v1/definitions", json=body, headers=bearer(keys.acme))).is_success
    name = body["name"]
    mine = await eventually(
        lambda: client.get(f"/v1/definitions/{name}/1", headers=bearer(keys.acme)),
        lambda r: r.status_code == 200,
    )
    assert mine.status_code == 200

    theirs = await client.get(f"/v1/definitions/{name}/1", headers=bearer(keys.globex))
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == "application/problem+json"
    latest = await client.get(f"/v1/definitions/{name}", headers=bearer(keys.globex))
    assert latest.status_code == 404
    listed = await client.get("/v1/definitions", headers=bearer(keys.globex))
    assert name not in {d["name"] for d in listed.json()["items"]}
