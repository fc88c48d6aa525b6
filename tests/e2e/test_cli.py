"""The `foldflow` CLI driving the whole system as processes (DESIGN §12).

One private deployment for the module: its own topic prefix, state dir and ports on the
shared broker and database. `foldflow up` runs once in the fixture; `down` is tested last
and must leave the shared Kafka and PostgreSQL running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foldflow import stack as local_stack
from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "worker", "projector", "gateway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def foldflow(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `foldflow ARGS` in a child process with this deployment's environment."""
    return subprocess.run(
        [sys.executable, "-m", "foldflow.cli.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _pids(state_dir: Path) -> dict[str, int]:
    return {s: int((state_dir / "pids" / f"{s}.pid").read_text()) for s in SERVICES}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.fixture(scope="module")
def deployment(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """`foldflow up` of a private deployment; its environment. `down` runs at the end."""
    state_dir = tmp_path_factory.mktemp("foldflow-state")
    env = {
        **os.environ,
        "COLUMNS": "220",
        "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FOLDFLOW_DATABASE_URL": stack.database_url,
        "FOLDFLOW_TOPIC_PREFIX": f"e2e-cli-{uuid.uuid4().hex[:8]}.",
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_GATEWAY_PORT": str(_free_port()),
        "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_WORKER_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_PROJECTOR_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_SERVICE_STOP_GRACE": "15",
    }
    up = foldflow(env, "up", timeout=600)
    try:
        assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
        yield env
    finally:
        foldflow(env, "down", timeout=120)


def test_up_starts_every_service_and_ps_lists_them_ready(deployment: dict[str, str]) -> None:
    state_dir = Path(deployment["FOLDFLOW_STATE_DIR"])
    assert (state_dir / "api-key").read_text().startswith("ffk_")
    assert all(_alive(pid) for pid in _pids(state_dir).values())
    ps = foldflow(deployment, "ps")
    assert ps.returncode == 0, ps.stdout + ps.stderr
    lines = {line.split("│")[1].strip(): line for line in ps.stdout.splitlines() if "│" in line}
    for service in SERVICES:
        assert "ready" in lines[service], ps.stdout
        assert str(state_dir / "logs" / f"{service}.log") in lines[service]


def test_up_twice_is_harmless(deployment: dict[str, str]) -> None:
    state_dir = Path(deployment["FOLDFLOW_STATE_DIR"])
    before, key = _pids(state_dir), (state_dir / "api-key").read_text()
    again = foldflow(deployment, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == len(SERVICES)
    assert _pids(state_dir) == before
    assert (state_dir / "api-key").read_text() == key
    assert "API key: kept" in again.stdout


def test_registering_a_bad_definition_prints_every_problem(
    deployment: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "steps:\n"
        "  - {id: a, task: builtin.echo, after: [nowhere]}\n"
        "  - {id: a, task: builtin.echo, colour: blue}\n"
    )
    result = foldflow(deployment, "definitions", "register", str(bad))
    assert result.returncode == 1
    out = result.stdout
    assert "steps[0].after[0]" in out and "nowhere" in out
    assert "steps[1].id" in out and "duplicate" in out
    assert "steps[1].colour" in out
    assert "registered" not in out


def test_start_wait_follows_examples_to_their_end(deployment: dict[str, str]) -> None:
    examples = sorted(str(p) for p in (REPO / "examples").glob("*.yaml"))
    registered = foldflow(deployment, "definitions", "register", *examples)
    assert registered.returncode == 0, registered.stdout + registered.stderr

    done = foldflow(deployment, "start", "flaky-retry", "--input", '{"n": 1}', "--wait",
                    "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout and "4 (2 failed)" in done.stdout

    saga = foldflow(deployment, "start", "order-fulfilment", "--input",
                    '{"order_id": "o-1", "amount": 12}', "--wait", "--timeout", "120")
    assert saga.returncode == 1, saga.stdout + saga.stderr
    assert "compensated" in saga.stdout


def test_down_stops_the_services_and_not_the_shared_stack(
    deployment: dict[str, str], stack: Settings
) -> None:
    state_dir = Path(deployment["FOLDFLOW_STATE_DIR"])
    pids = _pids(state_dir)
    down = foldflow(deployment, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(_alive(pid) for pid in pids.values())
    assert "Kafka" not in down.stdout  # without --stack, the stack is not even looked at
    ps = foldflow(deployment, "ps")
    assert ps.returncode == 1
    assert ps.stdout.count("stopped") == len(SERVICES)
    assert local_stack.kafka_reachable(stack) and local_stack.postgres_reachable(stack)
