"""/v1/workflows against the real broker, projector and database.

Writes are checked on ``wf.commands`` (what the orchestrator would read); reads come from
projections of events these tests publish as the orchestrator would.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gateway_support import DEFINITION, EventWriter, Keys, TopicLog, bearer, eventually, new_id

from foldflow.schemas.messages import (
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepCompleted,
    StepScheduled,
    TerminateWorkflow,
    WorkflowCompleted,
    WorkflowPaused,
    workflow_key,
)

pytestmark = pytest.mark.usefixtures("projector")


async def _registered(client: httpx.AsyncClient, key: str, version: int = 1) -> str:
    """Register a fresh definition and wait until the projection has it; its name."""
    name = f"order-{uuid.uuid4().hex[:8]}"
    body = {**DEFINITION, "name": name, "version": version}
    assert (await client.post("/v1/definitions", json=body, headers=bearer(key))).is_success
    seen = await eventually(
        lambda: client.get(f"/v1/definitions/{name}/{version}", headers=bearer(key)),
        lambda r: r.status_code == 200,
    )
    assert seen.status_code == 200
    return name


async def _projected(client: httpx.AsyncClient, key: str, workflow_id: str, status: str) -> None:
    found = await client.get(
        f"/v1/workflows/{workflow_id}",
        params={"wait_for": status, "timeout": "20s"},
        headers=bearer(key),
    )
    assert found.status_code == 200 and found.json()["status"] == status, found.text


async def test_start_publishes_the_command_acked_with_the_callers_tenant(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog
) -> None:
    name = await _registered(client, keys.acme, version=2)

    accepted = await client.post(
        "/v1/workflows",
        json={"definition": name, "input": {"amount": 7}},
        headers={**bearer(keys.acme), "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"},
    )

    assert accepted.status_code == 202, accepted.text
    workflow_id = accepted.json()["id"]
    assert accepted.json() == {"id": workflow_id, "status": "accepted"}
    assert accepted.headers["location"] == f"/v1/workflows/{workflow_id}"
    key = workflow_key("acme", workflow_id)  # acme's own id, keyed in acme's namespace
    [(envelope, headers)] = command_log.wait_for(lambda e: e.workflow_id == key)
    command = envelope.payload
    assert isinstance(command, StartWorkflow)
    assert (command.definition_name, command.definition_version) == (name, 2)  # latest, pinned
    assert command.tenant == "acme" and envelope.tenant == "acme"
    assert command.input_json == '{"amount":7}'
    assert headers["event_type"] == b"workflow.start.v1"
    assert headers["traceparent"].decode().split("-")[1] == "ab" * 16  # the request's trace


async def test_the_same_idempotency_key_always_names_one_workflow(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog, events: EventWriter
) -> None:
    name = await _registered(client, keys.acme)
    key = str(uuid.uuid4())
    body = {"definition": name, "input": {}}
    headers = {**bearer(keys.acme), "Idempotency-Key": key}

    first = await client.post("/v1/workflows", json=body, headers=headers)
    second = await client.post("/v1/workflows", json=body, headers=headers)

    assert first.status_code == second.status_code == 202
    workflow_id = first.json()["id"]
    assert second.json()["id"] == workflow_id
    starts = command_log.wait_for(
        lambda e: isinstance(e.payload, StartWorkflow) and e.payload.definition_name == name,
        count=2,  # the workflow is not projected yet, so both POSTs publish
    )
    assert {e.workflow_id for e, _ in starts} == {workflow_key("acme", workflow_id)}
    assert len({e.event_id for e, _ in starts}) == 1  # even the command id repeats

    # Once the workflow exists, a retry is answered without another command.
    events.start(workflow_id, tenant="acme", definition=name)
    await _projected(client, keys.acme, workflow_id, "running")
    third = await client.post("/v1/workflows", json=body, headers=headers)
    assert third.status_code == 202 and third.json()["id"] == workflow_id
    other = await client.post(
        "/v1/workflows", json=body, headers={**bearer(keys.globex), "Idempotency-Key": key}
    )
    assert other.status_code == 422  # globex has no such definition; and never acme's id


async def test_an_explicit_id_is_used(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog
) -> None:
    name = await _registered(client, keys.acme)
    workflow_id = new_id("explicit")
    accepted = await client.post(
        "/v1/workflows", json={"definition": name, "id": workflow_id}, headers=bearer(keys.acme)
    )
    assert accepted.status_code == 202 and accepted.json()["id"] == workflow_id
    assert accepted.headers["location"] == f"/v1/workflows/{workflow_id}"
    command_log.wait_for(lambda e: e.workflow_id == workflow_key("acme", workflow_id))


async def test_an_unknown_definition_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    refused = await client.post(
        "/v1/workflows", json={"definition": "never-registered"}, headers=bearer(keys.acme)
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["location"] == "body.definition"


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        ("cancel", {"reason": "customer asked"}, CancelWorkflow(reason="customer asked")),
        ("pause", None, PauseWorkflow()),
        ("resume", {}, ResumeWorkflow()),
        ("terminate", {"reason": "stuck"}, TerminateWorkflow(reason="stuck")),
        ("signals", {"name": "approve", "data": {"by": "ana"}},
         SignalWorkflow(name="approve", data_json='{"by":"ana"}')),
    ],
)  # fmt: skip
async def test_commands_reach_the_commands_topic(
    client: httpx.AsyncClient,
    keys: Keys,
    command_log: TopicLog,
    events: EventWriter,
    action: str,
    body: dict[str, object] | None,
    expected: object,
) -> None:
    workflow_id = new_id(action)
    events.start(workflow_id, tenant="acme")
    await _projected(client, keys.acme, workflow_id, "running")

    accepted = await client.post(
        f"/v1/workflows/{workflow_id}/{action}", json=body, headers=bearer(keys.acme_write)
    )

    assert accepted.status_code == 202, accepted.text
    [(envelope, _)] = command_log.wait_for(
        lambda e: e.workflow_id == workflow_key("acme", workflow_id)
    )
    assert envelope.payload == expected
    assert envelope.tenant == "acme" and envelope.source == "gateway"
    assert accepted.json() == {"id": workflow_id, "command": envelope.event_type,
                               "status": "accepted"}  # fmt: skip


async def test_commands_to_unknown_or_finished_workflows(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter
) -> None:
    unknown = await client.post(f"/v1/workflows/{new_id()}/cancel", headers=bearer(keys.acme))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    workflow_id = new_id("done")
    events.start(workflow_id, tenant="acme")
    events.emit(workflow_id, WorkflowCompleted(output_json='{"ok":true}'), tenant="acme")
    await _projected(client, keys.acme, workflow_id, "completed")
    for action in ("cancel", "pause", "resume", "terminate"):
        finished = await client.post(f"/v1/workflows/{workflow_id}/{action}",
                                     headers=bearer(keys.acme))  # fmt: skip
        assert finished.status_code == 409, action
        assert finished.json()["type"] == "urn:foldflow:problem:workflow-finished"
    signal = await client.post(f"/v1/workflows/{workflow_id}/signals",
                               json={"name": "x"}, headers=bearer(keys.acme))  # fmt: skip
    assert signal.status_code == 409


async def test_get_waits_for_a_terminal_status_and_shows_the_workflow(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter
) -> None:
    workflow_id = new_id("wait")
    events.start(workflow_id, tenant="acme")

    async def finish_later() -> None:
        await _projected(client, keys.acme, workflow_id, "running")
        scheduled = StepScheduled(step_id="charge", attempt=1, task_id="t1",
                                  task_type="builtin.echo", input_json='{"amount":5}',
                                  timeout_ms=1000)  # fmt: skip
        events.emit(workflow_id, scheduled, tenant="acme")
        completed = StepCompleted(step_id="charge", attempt=1, output_json='{"amount":5}')
        events.emit(workflow_id, completed, tenant="acme")
        events.emit(workflow_id, WorkflowCompleted(output_json='{"paid":5}'), tenant="acme")

    waiting = asyncio.create_task(client.get(
        f"/v1/workflows/{workflow_id}", params={"wait_for": "terminal", "timeout": "30s"},
        headers=bearer(keys.acme_read)))  # fmt: skip
    await finish_later()
    found = await waiting

    assert found.status_code == 200
    workflow = found.json()
    assert workflow["status"] == "completed"
    assert workflow["output"] == {"paid": 5} and workflow["input"] == {"amount": 5}
    assert workflow["definition"] == "order" and workflow["version"] == 1
    assert [(s["id"], s["status"], s["attempts"]) for s in workflow["steps"]] == [
        ("charge", "succeeded", 1)
    ]
    assert workflow["completed_at"] is not None


async def test_history_pages_through_every_event_in_order(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter
) -> None:
    workflow_id = new_id("history")
    events.start(workflow_id, tenant="acme")
    events.emit(workflow_id, WorkflowPaused(reason="a"), tenant="acme")
    events.emit(workflow_id, WorkflowCompleted(), tenant="acme")
    await _projected(client, keys.acme, workflow_id, "completed")

    sequences: list[int] = []
    types: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get(f"/v1/workflows/{workflow_id}/events", params=params,
                                headers=bearer(keys.acme_read))  # fmt: skip
        assert page.status_code == 200
        sequences += [e["sequence"] for e in page.json()["items"]]
        types += [e["event_type"] for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sequences == [1, 2, 3]
    assert types == ["workflow.started.v1", "workflow.paused.v1", "workflow.completed.v1"]

    missing = await client.get(f"/v1/workflows/{new_id()}/events", headers=bearer(keys.acme))
    assert missing.status_code == 404


async def test_list_filters_and_paginates_newest_first(
    client: httpx.AsyncClient, keys: Keys, events: EventWriter
) -> None:
    definition = f"listing-{uuid.uuid4().hex[:6]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [new_id("list") for _ in range(5)]
    for workflow_id in ids:
        events.start(workflow_id, tenant="acme", definition=definition)
    events.emit(ids[0], WorkflowCompleted(), tenant="acme")
    events.emit(ids[1], WorkflowCompleted(), tenant="acme")
    await _projected(client, keys.acme, ids[-1], "running")
    await _projected(client, keys.acme, ids[1], "completed")
    await _projected(client, keys.acme, ids[0], "completed")

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, object] = {"definition": definition, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/workflows", params=params, headers=bearer(keys.acme_read))
        assert page.status_code == 200, page.text
        seen += [w["id"] for w in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5 and pages == 3
    created = [datetime.fromisoformat(w) for w in await _created(client, keys, definition)]
    assert created == sorted(created, reverse=True)

    running = await client.get("/v1/workflows", params={"definition": definition,
                               "status": "running"}, headers=bearer(keys.acme))  # fmt: skip
    assert {w["id"] for w in running.json()["items"]} == set(ids[2:])
    both = await client.get("/v1/workflows", params=[("definition", definition),
                            ("status", "running"), ("status", "completed")],
                            headers=bearer(keys.acme))  # fmt: skip
    assert len(both.json()["items"]) == 5
    window = await client.get("/v1/workflows", params={
        "definition": definition, "created_after": before.isoformat(),
        "created_before": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()},
        headers=bearer(keys.acme))  # fmt: skip
    assert len(window.json()["items"]) == 5
    future = await client.get("/v1/workflows", params={
        "definition": definition, "created_after": (datetime.now(UTC) + timedelta(minutes=1))
        .isoformat()}, headers=bearer(keys.acme))  # fmt: skip
    assert future.json() == {"items": [], "next_cursor": None}
    theirs = await client.get("/v1/workflows", params={"definition": definition},
                              headers=bearer(keys.globex))  # fmt: skip
    assert theirs.json()["items"] == []
    bad = await client.get("/v1/workflows", params={"cursor": "garbage"}, headers=bearer(keys.acme))
    assert bad.status_code == 422 and bad.json()["errors"][0]["location"] == "query.cursor"


async def _created(client: httpx.AsyncClient, keys: Keys, definition: str) -> list[str]:
    page = await client.get("/v1/workflows", params={"definition": definition},
                            headers=bearer(keys.acme))  # fmt: skip
    return [w["created_at"] for w in page.json()["items"]]


async def test_a_retried_command_with_an_idempotency_key_repeats_its_id(
    client: httpx.AsyncClient, keys: Keys, command_log: TopicLog, events: EventWriter
) -> None:
    workflow_id = new_id("retry")
    events.start(workflow_id, tenant="acme")
    await _projected(client, keys.acme, workflow_id, "running")
    signal = {"name": "approve", "data": {"ok": True}}

    for key in ("sig-1", "sig-1", "sig-2"):
        sent = await client.post(
            f"/v1/workflows/{workflow_id}/signals",
            json=signal,
            headers={**bearer(keys.acme), "Idempotency-Key": key},
        )
        assert sent.status_code == 202
    unkeyed = await client.post(f"/v1/workflows/{workflow_id}/pause", headers=bearer(keys.acme))
    assert unkeyed.status_code == 202

    sent_ids = [e.event_id for e, _ in command_log.wait_for(
        lambda e: e.workflow_id == workflow_key("acme", workflow_id), count=4)]  # fmt: skip
    assert len(sent_ids) == 4
    assert sent_ids[0] == sent_ids[1]  # the retry: the orchestrator applies it once
    assert len({sent_ids[0], sent_ids[2], sent_ids[3]}) == 3
