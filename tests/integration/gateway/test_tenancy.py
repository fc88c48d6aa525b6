"""Workflow ids per tenant, children over REST and read-your-writes of "latest", against
the real broker, projector and database.

Each tenant has its own workflow ids: two tenants may both run ``order-1``, and another
tenant's id behaves exactly as an id nobody uses (same answers, same database work). A
child's id (``<parent>/<step>``) is addressable as a path, its ``/`` raw or encoded. A
client that got 201 for a new definition version starts that version when it names none.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from gateway_support import (
    DEFINITION,
    EventWriter,
    Keys,
    TopicLog,
    bearer,
    eventually,
    new_id,
    statements,
)
from sqlalchemy import Engine

from foldflow.schemas.messages import (
    CancelWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepWaiting,
    workflow_key,
)

pytestmark = pytest.mark.usefixtures("projector")


async def _registered(client: httpx.AsyncClient, key: str, name: str, version: int = 1) -> None:
    body = {**DEFINITION, "name": name, "version": version}
    created = await client.post("/v1/definitions", json=body, headers=bearer(key))
    assert created.status_code == 201, created.text


async def _seen(client: httpx.AsyncClient, key: str, path: str, *,
                items: int | None = None) -> dict[str, Any]:
    """``path``'s body once it answers 200 (with ``items`` items, if given: the projection
    writes a batch as its first event arrives, so the next event can come a batch later)."""
    found = await eventually(
        lambda: client.get(path, headers=bearer(key)),
        lambda r: r.status_code == 200 and (items is None or len(r.json()["items"]) >= items),
    )
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


async def test_two_tenants_start_the_same_id_and_each_sees_its_own(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog, events: EventWriter
) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    await _registered(client, keys.acme, name)
    await _registered(client, keys.globex, name)
    workflow_id = new_id("order")

    for key, amount in ((keys.acme, 1), (keys.globex, 2)):
        started = await client.post(
            "/v1/workflows", json={"definition": name, "id": workflow_id,
                                   "input": {"amount": amount}}, headers=bearer(key),
        )  # fmt: skip
        assert started.status_code == 202, started.text
        assert started.json()["id"] == workflow_id

    starts = command_log.wait_for(
        lambda e: isinstance(e.payload, StartWorkflow) and e.payload.definition_name == name,
        count=2,
    )
    by_key = {e.workflow_id: (e.tenant, e.payload) for e, _ in starts}
    assert set(by_key) == {workflow_key("acme", workflow_id), workflow_key("globex", workflow_id)}
    for tenant in ("acme", "globex"):
        envelope_tenant, payload = by_key[workflow_key(tenant, workflow_id)]
        assert envelope_tenant == tenant and isinstance(payload, StartWorkflow)
        assert payload.tenant == tenant

    # As the orchestrator would run them: two workflows, one per tenant.
    events.start(workflow_id, tenant="acme", definition=name)
    events.start(workflow_id, tenant="globex", definition=name)
    events.emit(workflow_id, StepWaiting("charge", "signal", signal_name="acme-only"),
                tenant="acme")  # fmt: skip
    acme = await _seen(client, keys.acme, f"/v1/workflows/{workflow_id}")
    globex = await _seen(client, keys.globex, f"/v1/workflows/{workflow_id}")
    assert acme["id"] == globex["id"] == workflow_id
    acme_history = await _seen(client, keys.acme, f"/v1/workflows/{workflow_id}/events",
                               items=2)
    globex_history = await _seen(client, keys.globex, f"/v1/workflows/{workflow_id}/events",
                                 items=1)
    assert len(acme_history["items"]) == 2 and len(globex_history["items"]) == 1
    for key in (keys.acme, keys.globex):
        listed = await client.get("/v1/workflows", params={"definition": name},
                                  headers=bearer(key))  # fmt: skip
        assert [w["id"] for w in listed.json()["items"]] == [workflow_id]


async def _answer(
    client: httpx.AsyncClient, engine: Engine, method: str, path: str, key: str,
    body: dict[str, Any] | None,
) -> tuple[int, dict[str, Any], int]:  # fmt: skip
    with statements(engine) as seen:
        response = await client.request(method, path, json=body, headers=bearer(key))
    return response.status_code, response.json(), len(seen)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/events", None),
        ("POST", "/cancel", {"reason": "mine now"}),
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("POST", "/terminate", None),
        ("POST", "/signals", {"name": "approve", "data": {"by": "globex"}}),
    ],
)  # fmt: skip
async def test_another_tenants_id_answers_as_an_id_nobody_uses(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter, gw_engine: Engine,
    method: str, suffix: str, body: dict[str, Any] | None,
) -> None:  # fmt: skip
    taken = new_id("acme")
    events.start(taken, tenant="acme")
    await _seen(client, keys.acme, f"/v1/workflows/{taken}")
    unused = new_id("acme")  # same length and shape, never started by anyone
    await client.get("/v1/workflows", headers=bearer(keys.globex))  # globex's key is known now

    foreign = await _answer(client, gw_engine, method, f"/v1/workflows/{taken}{suffix}",
                            keys.globex, body)  # fmt: skip
    missing = await _answer(client, gw_engine, method, f"/v1/workflows/{unused}{suffix}",
                            keys.globex, body)  # fmt: skip

    status, problem, work = foreign
    assert status == 404 and problem["type"] == "urn:foldflow:problem:not-found"
    assert (status, work) == (missing[0], missing[2])  # the same database work
    normalised = {k: str(v).replace(taken, "ID") for k, v in problem.items()}
    assert normalised == {k: str(v).replace(unused, "ID") for k, v in missing[1].items()}


async def test_starting_another_tenants_id_starts_the_callers_own_workflow(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter, command_log: TopicLog,
    gw_engine: Engine,
) -> None:  # fmt: skip
    name = f"mine-{uuid.uuid4().hex[:8]}"
    await _registered(client, keys.globex, name)
    taken, unused = new_id("acme"), new_id("acme")
    events.start(taken, tenant="acme")
    await _seen(client, keys.acme, f"/v1/workflows/{taken}")
    await client.get("/v1/workflows", headers=bearer(keys.globex))  # globex's key is known now
    # the gateway remembers that a pinned version exists (a latest version only briefly):
    # a first start makes the database work of the two measured ones the same by design
    warm = await client.post("/v1/workflows", headers=bearer(keys.globex),
                             json={"definition": name, "version": 1, "id": new_id("warm")})
    assert warm.status_code == 202, warm.text

    answers = [
        await _answer(client, gw_engine, "POST", "/v1/workflows", keys.globex,
                      {"definition": name, "version": 1, "id": workflow_id})
        for workflow_id in (taken, unused)
    ]  # fmt: skip
    assert [a[0] for a in answers] == [202, 202]
    assert answers[0][2] == answers[1][2]  # the same database work
    for workflow_id in (taken, unused):
        [(start, _)] = command_log.wait_for(
            lambda e, w=workflow_id: e.workflow_id == workflow_key("globex", w)
        )
        assert start.tenant == "globex" and isinstance(start.payload, StartWorkflow)


async def test_a_child_is_addressable_by_its_path_raw_or_encoded(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter, command_log: TopicLog
) -> None:
    parent = new_id("parent")
    child, odd = f"{parent}/kid", f"{parent}/events"  # a child of a step named "events"
    family = f"family-{uuid.uuid4().hex[:8]}"
    events.start(parent, tenant="acme", definition=family)
    events.emit(parent, StepWaiting("kid", "child", child_workflow_id=workflow_key("acme", child)),
                tenant="acme")  # fmt: skip
    events.start(child, tenant="acme", definition=family, parent=(parent, "kid"))
    events.start(odd, tenant="acme", definition=family, parent=(parent, "events"))

    shown = await _seen(client, keys.acme, f"/v1/workflows/{child}")
    assert (shown["id"], shown["parent_workflow_id"]) == (child, parent)
    encoded = await client.get(f"/v1/workflows/{parent}%2Fkid", headers=bearer(keys.acme))
    assert encoded.status_code == 200 and encoded.json()["id"] == child
    for path in (f"/v1/workflows/{child}/events", f"/v1/workflows/{parent}%2fkid/events"):
        history = await client.get(path, headers=bearer(keys.acme))
        assert history.status_code == 200, (path, history.text)
        [started] = history.json()["items"]
        assert started["payload"]["parent_workflow_id"] == parent  # the tenant's own id

    # "/events" raw is the parent's history; encoded, it is the child of step "events".
    parent_history = await _seen(client, keys.acme, f"/v1/workflows/{parent}/events", items=2)
    assert [e["event_type"] for e in parent_history["items"]] == [
        "workflow.started.v1", "step.waiting.v1",
    ]  # fmt: skip
    waiting = parent_history["items"][1]["payload"]
    assert waiting["child_workflow_id"] == child
    odd_child = await _seen(client, keys.acme, f"/v1/workflows/{parent}%2Fevents")
    assert odd_child["id"] == odd
    parent_shown = await _seen(client, keys.acme, f"/v1/workflows/{parent}")
    assert parent_shown["id"] == parent

    for action, body, payload in (
        ("signals", {"name": "go", "data": 1}, SignalWorkflow("go", "1")),
        ("cancel", {"reason": "enough"}, CancelWorkflow("enough")),
    ):
        sent = await client.post(f"/v1/workflows/{child}/{action}", json=body,
                                 headers=bearer(keys.acme))  # fmt: skip
        assert sent.status_code == 202, sent.text
        assert sent.json()["id"] == child
        command_log.wait_for(
            lambda e, p=payload: e.workflow_id == workflow_key("acme", child) and e.payload == p
        )

    listed = await client.get("/v1/workflows", params={"definition": family},
                              headers=bearer(keys.acme))  # fmt: skip
    mine = {w["id"]: w["parent_workflow_id"] for w in listed.json()["items"]}
    assert mine == {parent: None, child: parent, odd: parent}
    assert (await client.get(f"/v1/workflows/{child}", headers=bearer(keys.globex))).status_code \
        == 404  # fmt: skip


@pytest.mark.parametrize(
    "path",
    ["/v1/workflows/a//b", "/v1/workflows/a/b%20c", "/v1/workflows/a%2F", "/v1/workflows/%FF",
     "/v1/workflows/-x", "/v1/workflows/a/1step"],
)  # fmt: skip
async def test_a_malformed_workflow_path_is_422(
    client: httpx.AsyncClient, keys: Keys, path: str
) -> None:
    answer = await client.get(path, headers=bearer(keys.acme))
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["location"] == "path.workflow_id"


async def test_a_start_without_a_version_runs_the_version_just_registered(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog
) -> None:
    name = f"latest-{uuid.uuid4().hex[:8]}"
    await _registered(client, keys.acme, name, version=1)
    for version in range(2, 7):
        await _registered(client, keys.acme, name, version=version)  # 201: readable now
        started = await client.post("/v1/workflows", json={"definition": name},
                                    headers=bearer(keys.acme))  # fmt: skip
        assert started.status_code == 202
        key = workflow_key("acme", started.json()["id"])
        [(start, _)] = command_log.wait_for(lambda e, k=key: e.workflow_id == k)
        assert isinstance(start.payload, StartWorkflow)
        assert start.payload.definition_version == version
