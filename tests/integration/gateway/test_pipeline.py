"""The whole pipeline behind the gateway: real ``foldflow run orchestrator`` and ``foldflow
run worker`` processes on the module's topics, the real projector on its database.

Through the API only: register → start → status → history → terminal; a signal that
lets a waiting workflow finish; a cancel that ends one ``cancelled``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, bearer

from foldflow.gateway.schemas import TERMINAL_STATUSES
from foldflow.producers import Publisher
from foldflow.schemas.messages import (
    CancelWorkflow,
    Envelope,
    PauseWorkflow,
    Payload,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    workflow_key,
)
from foldflow.settings import Settings
from foldflow.topics import Topology

pytestmark = pytest.mark.usefixtures("projector", "services")

FOLDFLOW = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "foldflow"
#: Waits on the projection, repeated: the first start of a faust app takes a while.
WAIT = {"wait_for": "terminal", "timeout": "20s"}
ROUNDS = 6


@pytest.fixture(scope="module")
def services(gw_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The orchestrator and a worker of the built-in tasks, as subprocesses."""
    logs = tmp_path_factory.mktemp("pipeline-logs")
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": gw_settings.kafka_bootstrap,
        "FOLDFLOW_TOPIC_PREFIX": gw_settings.topic_prefix,
        "FOLDFLOW_PARTITIONS": str(gw_settings.partitions),
        "FOLDFLOW_DATABASE_URL": gw_settings.database_url,
        "FOLDFLOW_METRICS_PORT": "0",
    }
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for name in ("orchestrator", "worker"):
        log = logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(FOLDFLOW), "run", name], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append((proc, log))
    yield
    for proc, _ in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc, log in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            print(log.read_text(errors="replace")[-2000:])


async def _register(client: httpx.AsyncClient, key: str, definition: dict[str, Any]) -> None:
    response = await client.post("/v1/definitions", json=definition, headers=bearer(key))
    assert response.status_code == 201, response.text


async def _wait(
    client: httpx.AsyncClient, key: str, workflow_id: str, params: dict[str, str]
) -> dict[str, Any]:
    """The workflow once the condition holds (up to ROUNDS bounded waits)."""
    found: dict[str, Any] = {}
    for _ in range(ROUNDS):
        response = await client.get(f"/v1/workflows/{workflow_id}", params=params,
                                    headers=bearer(key))  # fmt: skip
        if response.status_code == 200:
            found = response.json()
            wanted = params["wait_for"]
            terminal = wanted == "terminal" and found["status"] in TERMINAL_STATUSES
            if terminal or found["status"] == wanted:
                return found
    raise AssertionError(f"{workflow_id} never reached {params['wait_for']}: {found}")


async def test_start_status_history_terminal(client: httpx.AsyncClient, keys: Keys) -> None:
    name = f"pipeline-{uuid.uuid4().hex[:8]}"
    await _register(client, keys.acme, {
        "name": name,
        "steps": [
            {"id": "charge", "task": "builtin.echo", "input": {"amount": "${input.amount}"}},
            {"id": "ship", "task": "builtin.echo", "after": ["charge"],
             "input": {"paid": "${steps.charge.output.amount}"}},
        ],
        "output": {"shipped": "${steps.ship.output.paid}"},
    })  # fmt: skip

    accepted = await client.post(
        "/v1/workflows", json={"definition": name, "input": {"amount": 42}},
        headers={**bearer(keys.acme), "Idempotency-Key": f"order-{name}"},
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    workflow_id = accepted.json()["id"]

    workflow = await _wait(client, keys.acme, workflow_id, WAIT)
    assert workflow["status"] == "completed", workflow
    assert workflow["output"] == {"shipped": 42}
    assert [(s["id"], s["status"]) for s in workflow["steps"]] == [
        ("charge", "succeeded"), ("ship", "succeeded"),
    ]  # fmt: skip

    history = await client.get(f"/v1/workflows/{workflow_id}/events", headers=bearer(keys.acme))
    items = history.json()["items"]
    assert [e["sequence"] for e in items] == list(range(1, len(items) + 1))
    assert items[0]["event_type"] == "workflow.started.v1"
    assert items[-1]["event_type"] == "workflow.completed.v1"
    assert items[0]["payload"]["tenant"] == "acme"

    again = await client.post(
        "/v1/workflows", json={"definition": name, "input": {"amount": 1}},
        headers={**bearer(keys.acme), "Idempotency-Key": f"order-{name}"},
    )  # fmt: skip
    assert again.json()["id"] == workflow_id  # a retried POST is the same workflow
    listed = await client.get("/v1/workflows", params={"definition": name},
                              headers=bearer(keys.acme))  # fmt: skip
    assert [w["id"] for w in listed.json()["items"]] == [workflow_id]


async def test_a_signal_lets_a_waiting_workflow_finish_and_cancel_ends_another(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"approval-{uuid.uuid4().hex[:8]}"
    await _register(client, keys.acme, {
        "name": name,
        "steps": [
            {"id": "submit", "task": "builtin.echo", "input": {"request": "${input.request}"}},
            {"id": "approval", "signal": "approve", "timeout": "10m", "after": ["submit"]},
            {"id": "done", "task": "builtin.echo", "after": ["approval"],
             "input": {"by": "${signals.approve.by}"}},
        ],
        "output": {"by": "${steps.done.output.by}"},
    })  # fmt: skip
    ids = []
    for request in ("laptop", "yacht"):
        accepted = await client.post(
            "/v1/workflows",
            headers=bearer(keys.acme),
            json={"definition": name, "input": {"request": request}},
        )
        assert accepted.status_code == 202, accepted.text
        ids.append(accepted.json()["id"])
    approved, cancelled = ids
    for workflow_id in ids:  # both wait for the signal
        await _waiting_for_signal(client, keys, workflow_id)

    signalled = await client.post(f"/v1/workflows/{approved}/signals", headers=bearer(keys.acme),
                                  json={"name": "approve", "data": {"by": "ana"}})  # fmt: skip
    assert signalled.status_code == 202
    cancel = await client.post(f"/v1/workflows/{cancelled}/cancel", headers=bearer(keys.acme),
                               json={"reason": "too expensive"})  # fmt: skip
    assert cancel.status_code == 202

    first = await _wait(client, keys.acme, approved, WAIT)
    assert (first["status"], first["output"]) == ("completed", {"by": "ana"})
    second = await _wait(client, keys.acme, cancelled, WAIT)
    history = await client.get(f"/v1/workflows/{cancelled}/events", headers=bearer(keys.acme))
    assert second["status"] == "cancelled", (second, history.json())
    late = await client.post(f"/v1/workflows/{cancelled}/signals", headers=bearer(keys.acme),
                             json={"name": "approve", "data": {}})  # fmt: skip
    assert late.status_code == 409


async def _waiting_for_signal(
    client: httpx.AsyncClient, keys: Keys, workflow_id: str, *, step: str = "approval",
    key: str | None = None,
) -> None:  # fmt: skip
    """Until the projection shows the step waiting (bounded by ROUNDS waits)."""
    headers = bearer(key or keys.acme)
    for _ in range(ROUNDS * 20):
        found = await client.get(f"/v1/workflows/{workflow_id}",
                                 params={"wait_for": "running", "timeout": "1s"},
                                 headers=headers)  # fmt: skip
        if found.status_code == 200 and any(
            s["id"] == step and s["status"] == "waiting" for s in found.json()["steps"]
        ):
            return
        await asyncio.sleep(0.2)
    history = await client.get(f"/v1/workflows/{workflow_id}/events", headers=headers)
    raise AssertionError(f"{workflow_id} never waited at {step}: {history.text}")


async def test_each_tenant_runs_its_own_definition_of_a_shared_name_and_id(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    versions = {
        keys.acme: {"name": name, "version": 1, "steps": [
            {"id": "only", "task": "builtin.echo", "input": {"by": "acme"}},
        ], "output": {"ran": "${steps.only.output.by}"}},
        keys.globex: {"name": name, "version": 1, "steps": [
            {"id": "first", "task": "builtin.echo", "input": {"by": "globex"}},
            {"id": "second", "task": "builtin.echo", "after": ["first"],
             "input": {"by": "${steps.first.output.by}"}},
        ], "output": {"ran": "${steps.second.output.by}"}},
    }  # fmt: skip
    for key, definition in versions.items():  # the same name:version, no 409 across tenants
        await _register(client, key, definition)

    started = {}
    workflow_id = f"order-{uuid.uuid4().hex[:8]}"  # both tenants run a workflow of this id
    for key in versions:
        accepted = await client.post(
            "/v1/workflows", json={"definition": name, "version": 1, "input": {},
                                   "id": workflow_id}, headers=bearer(key),
        )  # fmt: skip
        assert accepted.status_code == 202, accepted.text
        started[key] = accepted.json()["id"]
    assert started == {keys.acme: workflow_id, keys.globex: workflow_id}

    acme = await _wait(client, keys.acme, started[keys.acme], WAIT)
    assert (acme["status"], acme["output"]) == ("completed", {"ran": "acme"}), acme
    assert [s["id"] for s in acme["steps"]] == ["only"]
    globex = await _wait(client, keys.globex, started[keys.globex], WAIT)
    assert (globex["status"], globex["output"]) == ("completed", {"ran": "globex"}), globex
    assert [s["id"] for s in globex["steps"]] == ["first", "second"]


def _approval(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"id": "approval", "signal": "approve", "timeout": "10m"},
            {"id": "done", "task": "builtin.echo", "after": ["approval"],
             "input": {"by": "${signals.approve.by}"}},
        ],
        "output": {"by": "${steps.done.output.by}"},
    }  # fmt: skip


def _crafted(key: str, payload: Payload, tenant: str | None) -> Envelope:
    """A command as anyone with write access to wf.commands could write it."""
    return Envelope(
        event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="mallory",
        correlation_id="mallory", workflow_id=key, payload=payload, tenant=tenant,
    )  # fmt: skip


async def test_commands_naming_another_tenant_written_to_kafka_are_not_applied(
    client: httpx.AsyncClient, keys: Keys, gw_settings: Settings, gw_publisher: Publisher
) -> None:
    name = f"guarded-{uuid.uuid4().hex[:8]}"
    await _register(client, keys.acme, _approval(name))
    workflow_id, fresh = f"vault-{uuid.uuid4().hex[:8]}", f"fresh-{uuid.uuid4().hex[:8]}"
    accepted = await client.post("/v1/workflows", json={"definition": name, "id": workflow_id},
                                 headers=bearer(keys.acme))  # fmt: skip
    assert accepted.status_code == 202
    await _waiting_for_signal(client, keys, workflow_id)

    commands = Topology.of(gw_settings).commands
    key = workflow_key("acme", workflow_id)
    for payload, tenant in [
        (CancelWorkflow("globex says so"), "globex"),
        (TerminateWorkflow("no tenant named"), None),
        (PauseWorkflow("globex"), "globex"),
        (SignalWorkflow("approve", '{"by":"mallory"}'), "globex"),
        (StartWorkflow(name, 1, '{"x":1}', "globex"), "globex"),  # a restart as globex
    ]:  # fmt: skip
        gw_publisher.publish(commands, _crafted(key, payload, tenant))
    # A start in acme's namespace that claims globex, then acme's own start of that id.
    fresh_key = workflow_key("acme", fresh)
    gw_publisher.publish(commands, _crafted(fresh_key, StartWorkflow(name, 1, "{}", "globex"),
                                            "globex"))  # fmt: skip
    gw_publisher.publish(commands, _crafted(fresh_key, StartWorkflow(name, 1, "{}", "acme"),
                                            "globex"))  # envelope and payload disagree
    # Acme's own signal comes after the forged commands on the same partition.
    signalled = await client.post(f"/v1/workflows/{workflow_id}/signals",
                                  json={"name": "approve", "data": {"by": "ana"}},
                                  headers=bearer(keys.acme))  # fmt: skip
    assert signalled.status_code == 202

    done = await _wait(client, keys.acme, workflow_id, WAIT)
    assert (done["status"], done["output"]) == ("completed", {"by": "ana"}), done
    history = await client.get(f"/v1/workflows/{workflow_id}/events", headers=bearer(keys.acme))
    types = [e["event_type"] for e in history.json()["items"]]
    assert types == ["workflow.started.v1", "step.waiting.v1", "signal.received.v1",
                     "step.completed.v1", "step.scheduled.v1", "step.completed.v1",
                     "workflow.completed.v1"], types  # fmt: skip

    started = await client.post("/v1/workflows", json={"definition": name, "id": fresh},
                                headers=bearer(keys.acme))  # fmt: skip
    assert started.status_code == 202
    await _waiting_for_signal(client, keys, fresh)  # acme's start ran: no forged one did
    first = await client.get(f"/v1/workflows/{fresh}/events", headers=bearer(keys.acme))
    assert first.json()["items"][0]["payload"]["tenant"] == "acme"


async def test_a_child_workflow_is_read_and_steered_over_rest(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    kid, parent = f"kid-{uuid.uuid4().hex[:8]}", f"parent-{uuid.uuid4().hex[:8]}"
    await _register(client, keys.acme, _approval(kid))
    await _register(client, keys.acme, {
        "name": parent,
        "steps": [{"id": "review", "workflow": kid}],
        "output": {"child": "${steps.review.output}"},
    })  # fmt: skip
    ids = []
    for _ in range(2):
        accepted = await client.post("/v1/workflows", json={"definition": parent},
                                     headers=bearer(keys.acme))  # fmt: skip
        assert accepted.status_code == 202
        ids.append(accepted.json()["id"])
    signalled_parent, cancelled_parent = ids
    children = [f"{p}/review" for p in ids]
    for child in children:
        await _waiting_for_signal(client, keys, child)  # GET of the child, by its path
    shown = await client.get(f"/v1/workflows/{children[0]}", headers=bearer(keys.acme))
    assert (shown.json()["id"], shown.json()["parent_workflow_id"]) == (
        children[0], signalled_parent)  # fmt: skip
    encoded = await client.get(f"/v1/workflows/{signalled_parent}%2Freview/events",
                               headers=bearer(keys.acme))  # fmt: skip
    assert encoded.status_code == 200
    assert encoded.json()["items"][0]["payload"]["parent_workflow_id"] == signalled_parent

    signal = await client.post(f"/v1/workflows/{children[0]}/signals",
                               json={"name": "approve", "data": {"by": "kid-reviewer"}},
                               headers=bearer(keys.acme))  # fmt: skip
    assert signal.status_code == 202, signal.text
    cancel = await client.post(f"/v1/workflows/{children[1]}/cancel",
                               json={"reason": "not needed"},
                               headers=bearer(keys.acme))  # fmt: skip
    assert cancel.status_code == 202, cancel.text

    child_done = await _wait(client, keys.acme, children[0], WAIT)
    assert (child_done["status"], child_done["output"]) == ("completed", {"by": "kid-reviewer"})
    parent_done = await _wait(client, keys.acme, signalled_parent, WAIT)
    assert parent_done["status"] == "completed"
    assert parent_done["output"] == {"child": {"by": "kid-reviewer"}}
    assert (await _wait(client, keys.acme, children[1], WAIT))["status"] == "cancelled"
    failed_parent = await _wait(client, keys.acme, cancelled_parent, WAIT)
    assert failed_parent["status"] == "failed", failed_parent
    assert failed_parent["error"] == (
        f"step review failed: child workflow {children[1]} ended cancelled: not needed"
    )
    theirs = await client.get(f"/v1/workflows/{children[0]}", headers=bearer(keys.globex))
    assert theirs.status_code == 404
