"""Authentication and authorisation on every route: 401 without (or with a bad)
credential, 403 without the scope, 404 for another tenant's workflow or definition."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
from gateway_support import DEFINITION, EventWriter, Keys, bearer, eventually, make_jwt, new_id
from sqlalchemy import Engine

from foldflow.gateway.app import create_app
from foldflow.producers import Publisher
from foldflow.settings import ConfiguredApiKey, Settings

pytestmark = pytest.mark.usefixtures("projector")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    body: dict[str, object] | None = None

    def url(self, workflow_id: str, definition: str) -> str:
        return self.path.format(id=workflow_id, name=definition)


ROUTES = [
    Route("POST", "/v1/definitions", "definitions:write", DEFINITION),
    Route("GET", "/v1/definitions", "workflows:read"),
    Route("GET", "/v1/definitions/{name}", "workflows:read"),
    Route("GET", "/v1/definitions/{name}/1", "workflows:read"),
    Route("POST", "/v1/workflows", "workflows:write", {"definition": "order"}),
    Route("GET", "/v1/workflows", "workflows:read"),
    Route("GET", "/v1/workflows/{id}", "workflows:read"),
    Route("GET", "/v1/workflows/{id}/events", "workflows:read"),
    Route("POST", "/v1/workflows/{id}/cancel", "workflows:write"),
    Route("POST", "/v1/workflows/{id}/pause", "workflows:write"),
    Route("POST", "/v1/workflows/{id}/resume", "workflows:write"),
    Route("POST", "/v1/workflows/{id}/terminate", "workflows:write"),
    Route("POST", "/v1/workflows/{id}/signals", "workflows:write", {"name": "go"}),
]
ROUTE_IDS = [f"{r.method} {r.path}" for r in ROUTES]
#: Routes naming one of acme's resources: another tenant gets 404 there.
OWNED = [r for r in ROUTES if "{" in r.path]


@dataclass(frozen=True)
class AcmeThings:
    workflow_id: str
    definition: str


@pytest.fixture(scope="module")
async def acme_things(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine, keys: Keys,
    events: EventWriter,
) -> AcmeThings:  # fmt: skip
    """A running workflow and a registered definition of tenant acme, projected."""
    app = create_app(gw_settings, publisher=gw_publisher, engine=gw_engine)
    name = f"authz-{uuid.uuid4().hex[:8]}"
    workflow_id = new_id("authz")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as http:  # fmt: skip
        created = await http.post("/v1/definitions", json={**DEFINITION, "name": name},
                                  headers=bearer(keys.acme))  # fmt: skip
        assert created.status_code == 201
        events.start(workflow_id, tenant="acme", definition=name)
        for path in (f"/v1/definitions/{name}/1", f"/v1/workflows/{workflow_id}"):
            seen = await eventually(lambda p=path: http.get(p, headers=bearer(keys.acme)),
                                    lambda r: r.status_code == 200)  # fmt: skip
            assert seen.status_code == 200
    return AcmeThings(workflow_id, name)


async def _call(
    client: httpx.AsyncClient, route: Route, things: AcmeThings, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        route.method, route.url(things.workflow_id, things.definition), json=route.body,
        headers=headers,
    )  # fmt: skip


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_no_credential_is_401(
    client: httpx.AsyncClient, route: Route, acme_things: AcmeThings
) -> None:
    response = await _call(client, route, acme_things, {})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_an_unknown_key_or_bad_token_is_401(
    client: httpx.AsyncClient, route: Route, acme_things: AcmeThings
) -> None:
    for headers in (
        bearer("ffk_not-a-key"),
        {"X-API-Key": "ffk_not-a-key"},
        bearer(make_jwt("acme", route.scope, exp=int(time.time()) - 120)),  # expired
        bearer(make_jwt("acme", route.scope, aud="someone-else")),
        bearer(make_jwt("", route.scope)),  # no tenant
        bearer(make_jwt("acme", route.scope)[:-4] + "AAAA"),  # bad signature
    ):
        response = await _call(client, route, acme_things, headers)
        assert response.status_code == 401, (headers, response.text)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_missing_scope_is_403(
    client: httpx.AsyncClient, keys: Keys, route: Route, acme_things: AcmeThings
) -> None:
    others = {
        "workflows:read": [keys.acme_write, keys.acme_definitions],
        "workflows:write": [keys.acme_read, keys.acme_definitions],
        "definitions:write": [keys.acme_read, keys.acme_write],
    }[route.scope]
    for key in others:
        response = await _call(client, route, acme_things, bearer(key))
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "urn:foldflow:problem:forbidden"
    token = make_jwt("acme", [s for s in ("workflows:read", "workflows:write",
                                          "definitions:write") if s != route.scope])  # fmt: skip
    assert (await _call(client, route, acme_things, bearer(token))).status_code == 403


@pytest.mark.parametrize("route", OWNED, ids=[f"{r.method} {r.path}" for r in OWNED])
async def test_another_tenants_resource_is_404(
    client: httpx.AsyncClient, keys: Keys, route: Route, acme_things: AcmeThings
) -> None:
    as_globex = await _call(client, route, acme_things, bearer(keys.globex))
    assert as_globex.status_code == 404, as_globex.text
    token = make_jwt("globex", "workflows:read workflows:write definitions:write")
    assert (await _call(client, route, acme_things, bearer(token))).status_code == 404
    as_acme = await _call(client, route, acme_things, bearer(keys.acme))
    assert as_acme.status_code in (200, 202), as_acme.text  # the same call works for acme


async def test_lists_and_starts_never_cross_tenants(
    client: httpx.AsyncClient, keys: Keys, acme_things: AcmeThings
) -> None:
    listed = await client.get("/v1/workflows", headers=bearer(keys.globex))
    assert acme_things.workflow_id not in {w["id"] for w in listed.json()["items"]}
    definitions = await client.get("/v1/definitions", headers=bearer(keys.globex))
    assert acme_things.definition not in {d["name"] for d in definitions.json()["items"]}
    start = await client.post("/v1/workflows", json={"definition": acme_things.definition},
                              headers=bearer(keys.globex))  # fmt: skip
    assert start.status_code == 422  # acme's definition does not exist for globex


async def test_jwt_scopes_as_string_or_list_and_x_api_key_work(
    client: httpx.AsyncClient, keys: Keys, acme_things: AcmeThings
) -> None:
    path = f"/v1/workflows/{acme_things.workflow_id}"
    for headers in (
        bearer(make_jwt("acme", "workflows:read")),
        bearer(make_jwt("acme", ["workflows:read"])),
        {"X-API-Key": keys.acme_read},
        bearer(keys.acme_read),
    ):
        found = await client.get(path, headers=headers)
        assert found.status_code == 200, found.text
        assert found.json()["id"] == acme_things.workflow_id


async def test_keys_from_settings_work_plain_or_hashed(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine, acme_things: AcmeThings
) -> None:
    import hashlib

    hashed = "ffk_" + uuid.uuid4().hex
    settings = gw_settings.model_copy(update={"api_keys": (
        ConfiguredApiKey(tenant="acme", scopes=("workflows:read",), key="plain-settings-key"),
        ConfiguredApiKey(tenant="acme", scopes=("workflows:read",),
                         sha256=hashlib.sha256(hashed.encode()).hexdigest()),
    )})  # fmt: skip
    app = create_app(settings, publisher=gw_publisher, engine=gw_engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as http:  # fmt: skip
        for key in ("plain-settings-key", hashed):
            found = await http.get(f"/v1/workflows/{acme_things.workflow_id}",
                                   headers=bearer(key))  # fmt: skip
            assert found.status_code == 200
        write = await http.post(f"/v1/workflows/{acme_things.workflow_id}/pause",
                                headers=bearer("plain-settings-key"))  # fmt: skip
        assert write.status_code == 403
