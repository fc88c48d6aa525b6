"""The README's gateway walk-through over real HTTP: `foldflow up` of a private deployment
(own topic prefix, database, state dir and ports), the key from `<state dir>/api-key`,
then register → start → signal / cancel → wait → history, as the curl examples do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, make_url, text

from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _foldflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def gateway(
    stack: Settings, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """``(base URL, API key)`` of a private `foldflow up`; `down` and cleanup after."""
    name = f"foldflow_t_{uuid.uuid4().hex[:8]}"
    server = create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    state_dir = tmp_path_factory.mktemp("gateway-e2e")
    port = _free_port()
    prefix = f"e2e-gw-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FOLDFLOW_DATABASE_URL": make_url(stack.database_url).set(database=name)
        .render_as_string(hide_password=False),
        "FOLDFLOW_TOPIC_PREFIX": prefix,
        "FOLDFLOW_PARTITIONS": "3",
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_GATEWAY_PORT": str(port),
        "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_WORKER_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_PROJECTOR_METRICS_PORT": str(_free_port()),
    }  # fmt: skip
    try:
        up = _foldflow(env, "up")
        assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
        yield f"http://127.0.0.1:{port}", (state_dir / "api-key").read_text().strip()
    finally:
        _foldflow(env, "down")
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


APPROVAL = {
    "name": "approval-demo", "version": 1,
    "steps": [
        {"id": "submit", "task": "builtin.echo", "input": {"request": "${input.request}"}},
        {"id": "approval", "signal": "approve", "timeout": "10m", "after": ["submit"]},
        {"id": "done", "task": "builtin.echo", "after": ["approval"],
         "input": {"by": "${signals.approve.by}"}},
    ],
    "output": {"approved_by": "${steps.done.output.by}"},
}  # fmt: skip


def _waiting(http: httpx.Client, workflow_id: str) -> dict[str, Any]:
    found = http.get(f"/v1/workflows/{workflow_id}")
    for _ in range(120):
        found = http.get(f"/v1/workflows/{workflow_id}",
                         params={"wait_for": "running", "timeout": "2s"})  # fmt: skip
        if found.status_code == 200 and any(
            s["id"] == "approval" and s["status"] == "waiting" for s in found.json()["steps"]
        ):
            return dict(found.json())
        time.sleep(0.25)
    history = http.get(f"/v1/workflows/{workflow_id}/events").text
    raise AssertionError(f"{workflow_id} never waited for its signal: {found.text}\n{history}")


def test_the_readme_walkthrough(gateway: tuple[str, str]) -> None:
    base, key = gateway
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                      timeout=30) as http:  # fmt: skip
        assert http.post("/v1/definitions", json=APPROVAL).status_code == 201
        laptop = http.post(
            "/v1/workflows",
            headers={"Idempotency-Key": "laptop-1"},
            json={"definition": "approval-demo", "input": {"request": "laptop"}},
        )
        assert laptop.status_code == 202, laptop.text
        laptop_id = laptop.json()["id"]
        assert laptop.headers["location"] == f"/v1/workflows/{laptop_id}"
        yacht = http.post("/v1/workflows", json={"definition": "approval-demo",
                          "input": {"request": "yacht"}, "id": "yacht-1"})  # fmt: skip
        assert yacht.json() == {"id": "yacht-1", "status": "accepted"}

        _waiting(http, laptop_id)
        _waiting(http, "yacht-1")
        assert (
            http.post(
                f"/v1/workflows/{laptop_id}/signals",
                json={"name": "approve", "data": {"by": "ana"}},
            ).status_code
            == 202
        )
        assert (
            http.post("/v1/workflows/yacht-1/cancel", json={"reason": "too expensive"}).status_code
            == 202
        )

        done = http.get(
            f"/v1/workflows/{laptop_id}", params={"wait_for": "terminal", "timeout": "30s"}
        ).json()
        assert (done["status"], done["output"]) == ("completed", {"approved_by": "ana"})
        cancelled = http.get(
            "/v1/workflows/yacht-1", params={"wait_for": "terminal", "timeout": "30s"}
        ).json()
        assert cancelled["status"] == "cancelled"
        history = http.get(f"/v1/workflows/{laptop_id}/events").json()["items"]
        assert history[0]["event_type"] == "workflow.started.v1"
        assert "signal.received.v1" in [e["event_type"] for e in history]
        assert history[-1]["event_type"] == "workflow.completed.v1"
        listed = http.get("/v1/workflows", params={"status": "cancelled",
                          "definition": "approval-demo"}).json()  # fmt: skip
        assert [w["id"] for w in listed["items"]] == ["yacht-1"]
        assert http.get("/v1/definitions/approval-demo").json()["version"] == 1

    anonymous = httpx.get(f"{base}/v1/workflows", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{base}/readyz", timeout=10).json()["status"] == "ready"
    assert "foldflow_http_requests_total" in httpx.get(f"{base}/metrics", timeout=10).text
