"""The `foldflow` CLI driving the whole system as processes (DESIGN §12).

One private deployment for the module: its own topic prefix, state dir and ports on the
shared broker and database. `foldflow up` runs once in the fixture; `down` is tested last
and must leave the shared Kafka and PostgreSQL running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
import yaml
from confluent_kafka.admin import AdminClient
from projection_support import scratch_database

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
    stack: Settings, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """`foldflow up` of a private deployment (its own database); its environment. At the
    end: `down`, and its topics and database are deleted."""
    state_dir = tmp_path_factory.mktemp("foldflow-state")
    database = contextlib.ExitStack()
    env = {
        **os.environ,
        "COLUMNS": "220",
        "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FOLDFLOW_DATABASE_URL": database.enter_context(scratch_database(stack.database_url)),
        "FOLDFLOW_TOPIC_PREFIX": f"e2e-cli-{uuid.uuid4().hex[:8]}.",
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_GATEWAY_PORT": str(_free_port()),
        "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_WORKER_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_PROJECTOR_METRICS_PORT": str(_free_port()),
        "FOLDFLOW_SERVICE_STOP_GRACE": "15",
    }
    try:
        up = foldflow(env, "up", timeout=600)
        assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
        yield env
    finally:
        foldflow(env, "down", timeout=120)
        prefix = env["FOLDFLOW_TOPIC_PREFIX"]
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()
        database.close()


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


def test_json_outputs_of_a_running_deployment(deployment: dict[str, str]) -> None:
    """ps, start --wait, status, events and definitions list|show print one JSON document."""
    def parsed(*args: str, code: int = 0) -> Any:
        proc = foldflow(deployment, *args)
        assert proc.returncode == code, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    ps = parsed("ps", "--json")
    assert {s["name"]: s["state"] for s in ps} == dict.fromkeys(SERVICES, "ready")
    assert all(isinstance(s["pid"], int) and s["log"].endswith(".log") for s in ps)

    example = str(REPO / "examples" / "flaky-retry.yaml")
    assert foldflow(deployment, "definitions", "register", example).returncode == 0
    done = parsed("start", "flaky-retry", "--input", '{"n": 2}', "--wait", "--timeout", "2m",
                  "--json")
    assert done["status"] == "completed" and done["terminal"] is True
    assert (done["attempts"], done["failed_attempts"]) == (4, 2)
    wid = done["id"]

    deadline = time.monotonic() + 60  # the projector writes a moment after wf.events
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and status.get("status") != "completed":
        proc = foldflow(deployment, "status", wid, "--json")
        status = json.loads(proc.stdout) if proc.returncode == 0 else {}
        time.sleep(0.5)
    assert status["status"] == "completed" and status["id"] == wid, status
    assert status["tenant"] == "default" and status["steps"], status
    assert {step["status"] for step in status["steps"]} == {"succeeded"}

    history = parsed("events", wid, "--json")
    assert [e["sequence"] for e in history] == list(range(1, len(history) + 1))
    assert history[0]["event_type"] == "workflow.started.v1"
    assert history[-1]["event_type"] == "workflow.completed.v1"

    listed = parsed("definitions", "list", "--json")
    assert {"name": "flaky-retry", "version": 1, "tenant": "default"}.items() <= \
        next(d for d in listed if d["name"] == "flaky-retry").items()
    shown = parsed("definitions", "show", "flaky-retry", "--json")
    assert shown["version"] == 1 and shown["definition"]["name"] == "flaky-retry"
    assert shown["definition"]["steps"]

    missing = foldflow(deployment, "status", "no-such-workflow", "--json")
    assert missing.returncode == 1 and missing.stdout == ""
    unknown = foldflow(deployment, "definitions", "show", "no-such-definition", "--json")
    assert unknown.returncode == 1 and unknown.stdout == ""


def test_demo_runs_a_batch_and_reads_it_back_through_the_gateway(
    deployment: dict[str, str],
) -> None:
    demo = foldflow(deployment, "demo", "--no-up", "--batch", "5", "--timeout", "150")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "5/5 as expected" in demo.stdout
    assert "5/5 agree" in demo.stdout  # the projections, through the gateway, say the same


PROMETHEUS = shutil.which("prometheus")
ALL_SERVICES_UP = 'count(up{job=~"foldflow-.*"} == 1)'


def _prometheus_config(env: dict[str, str], rules: list[Path]) -> str:
    ports = {
        "orchestrator": env["FOLDFLOW_ORCHESTRATOR_METRICS_PORT"],
        "worker": env["FOLDFLOW_WORKER_METRICS_PORT"],
        "projector": env["FOLDFLOW_PROJECTOR_METRICS_PORT"],
        "gateway": env["FOLDFLOW_GATEWAY_PORT"],
    }
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(r) for r in rules]
    config.pop("alerting", None)
    for job in config["scrape_configs"]:
        service = job["static_configs"][0]["labels"]["service"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[service]}"]
    return yaml.safe_dump(config)


def _query(api: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt install prometheus)")
def test_prometheus_scrapes_every_service_and_every_panel_and_rule_evaluates(
    deployment: dict[str, str], tmp_path: Path
) -> None:
    """A real Prometheus scrapes the running services with deploy/prometheus's jobs and
    rules; every dashboard query and alert expression evaluates, and the series that the
    workflows run above must have produced are there."""
    assert PROMETHEUS is not None
    rules = [tmp_path / name for name in ("alerts.yml", "slo.yml")]
    for rule in rules:
        shutil.copy(REPO / "deploy/prometheus" / rule.name, rule)
    config = tmp_path / "prometheus.yml"
    config.write_text(_prometheus_config(deployment, rules))
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        up: list[dict[str, Any]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                up = _query(api, ALL_SERVICES_UP)
            except (httpx.HTTPError, ValueError):
                up = []
            if up and up[0]["value"][1] == "4":
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "4", (tmp_path / "prometheus.log").read_text()[-3000:]

        boards = [json.loads(p.read_text())
                  for p in (REPO / "deploy/grafana/dashboards").glob("*.json")]
        for board in boards:
            for panel in board["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$__rate_interval", "1m")
                    for variable in ("instance", "definition", "task_type"):
                        expr = expr.replace(f"${variable}", ".*")  # the variables' "All"
                    _query(api, expr)
        for expected in ("foldflow_workflows_started_total", "foldflow_workflows_finished_total",
                         "foldflow_step_attempts_total", "foldflow_messages_handled_total",
                         "foldflow_projection_events_applied_total",
                         "foldflow_projection_lag_seconds_bucket",
                         "foldflow_workflow_outcomes_total"):
            assert _query(api, expected), f"no {expected} series scraped"

        deadline = time.monotonic() + 150  # the slowest rule group runs once a minute
        health: set[str] = set()
        while time.monotonic() < deadline:
            groups = httpx.get(f"{api}/api/v1/rules", timeout=10).json()["data"]["groups"]
            health = {rule["health"] for group in groups for rule in group["rules"]}
            if health == {"ok"}:
                break
            time.sleep(0.5)
        assert health == {"ok"}, groups
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
    # --stack stops only a stack that `stack up` started from this state dir: none here.
    with_stack = foldflow(deployment, "down", "--stack", timeout=120)
    assert with_stack.returncode == 0, with_stack.stdout + with_stack.stderr
    assert with_stack.stdout.count("left alone") == 2, with_stack.stdout
    assert local_stack.kafka_reachable(stack) and local_stack.postgres_reachable(stack)
