"""Observability of the whole system as processes, against real backends.

One private `foldflow up` deployment (own database, topic prefix, ports, state dir) exports
its spans over OTLP/gRPC to a real Jaeger v2 and is scraped by a real Prometheus that loads
deploy/prometheus's alert and SLO rules and sends its alerts to a real Alertmanager:

- one trace covers gateway → command → orchestrator → task → worker → result →
  orchestrator → event → projector, each hop the child of the one before;
- the SLO recording rules and burn-rate alerts evaluate on what the workflows did: a
  failure of Foldflow's (attempts timed out) counts against the objective, one the
  definition asks for (a non-retryable failure) does not, and the burn pages;
- a poison message's dead letter fires FoldflowDeadLettersGrowing and Alertmanager has it;
- a killed worker is an outage whose recovery MTTR measures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from observability_support import (
    ALERTMANAGER,
    PROMETHEUS,
    Api,
    Jaeger,
    alertmanager,
    free_port,
    jaeger,
    jaeger_binary,
    prometheus,
    prometheus_config,
    wait_for,
)
from sqlalchemy import create_engine, make_url, text

from foldflow.kafka import kafka_config
from foldflow.observability.outcomes import OUTCOMES
from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 180.0


@dataclass
class Deployment:
    """A running `foldflow up`: its environment, API and Kafka names."""

    env: dict[str, str]
    api: str
    key: str
    prefix: str
    state_dir: Path

    def http(self) -> httpx.Client:
        """An authenticated client of the gateway."""
        return httpx.Client(base_url=self.api, timeout=60,
                            headers={"Authorization": f"Bearer {self.key}"})

    def foldflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`foldflow ARGS` with this deployment's environment."""
        return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=600,
                              check=False)  # fmt: skip

    @property
    def ports(self) -> dict[str, str]:
        """Service name -> the port its /metrics answers on."""
        return {"orchestrator": self.env["FOLDFLOW_ORCHESTRATOR_METRICS_PORT"],
                "worker": self.env["FOLDFLOW_WORKER_METRICS_PORT"],
                "projector": self.env["FOLDFLOW_PROJECTOR_METRICS_PORT"],
                "gateway": self.env["FOLDFLOW_GATEWAY_PORT"]}


@pytest.fixture(scope="module")
def tracing(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    """A real Jaeger v2 (skips only when Go is missing to build it)."""
    binary = jaeger_binary(stack.cache_dir)
    if isinstance(binary, str):
        pytest.skip(binary)
    with jaeger(binary, tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.fixture(scope="module")
def deployment(
    stack: Settings, admin: AdminClient, request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """`foldflow up` exporting spans to Jaeger over OTLP/gRPC (when Jaeger can be had; the
    metric and alert tests need no Jaeger); `down` and cleanup after."""
    try:
        tracing: Jaeger | None = request.getfixturevalue("tracing")
    except pytest.skip.Exception:
        tracing = None
    database = f"foldflow_t_{uuid.uuid4().hex[:8]}"
    server = create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    state_dir = tmp_path_factory.mktemp("observability-state")
    port = free_port()
    prefix = f"e2e-obs-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "FOLDFLOW_DATABASE_URL": make_url(stack.database_url).set(database=database)
        .render_as_string(hide_password=False),
        "FOLDFLOW_TOPIC_PREFIX": prefix,
        "FOLDFLOW_PARTITIONS": "3",
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_GATEWAY_PORT": str(port),
        "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(free_port()),
        "FOLDFLOW_WORKER_METRICS_PORT": str(free_port()),
        "FOLDFLOW_PROJECTOR_METRICS_PORT": str(free_port()),
        "FOLDFLOW_SERVICE_STOP_GRACE": "15",
    }  # fmt: skip
    if tracing is not None:  # the standard OpenTelemetry variables, read by the SDK
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": tracing.otlp_grpc,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e"}
    deployed = Deployment(env, f"http://127.0.0.1:{port}", "", prefix, state_dir)
    try:
        up = deployed.foldflow("up")
        assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
        deployed.key = (state_dir / "api-key").read_text().strip()
        yield deployed
    finally:
        deployed.foldflow("down")
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A real Alertmanager with deploy/alertmanager/alertmanager.yml."""
    if ALERTMANAGER is None:
        pytest.skip("prometheus-alertmanager is not installed (make tools)")
    with alertmanager(tmp_path_factory.mktemp("alertmanager")) as running:
        yield running


@pytest.fixture(scope="module")
def metrics(
    deployment: Deployment, alerts: Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """A real Prometheus scraping the deployment with every rule file, alerting `alerts`."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (make tools)")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = prometheus_config(deployment.ports, workdir, alertmanager_url=alerts.url)
    with prometheus(config, workdir) as running:
        wait_for(lambda: running.value('count(up{job=~"foldflow-.*"} == 1)') == 4,
                 timeout=WAIT_S, what="every service scraped")
        yield running


def _register(http: httpx.Client, definition: dict[str, Any]) -> None:
    answer = http.post("/v1/definitions", json=definition)
    assert answer.status_code in (201, 202), answer.text


def _start(http: httpx.Client, definition: str, *, headers: dict[str, str] | None = None) -> str:
    answer = http.post("/v1/workflows", json={"definition": definition, "input": {"n": 1}},
                       headers=headers or {})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _ended(http: httpx.Client, workflow_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        found = http.get(f"/v1/workflows/{workflow_id}",
                         params={"wait_for": "terminal", "timeout": "20s"})
        if found.status_code == 200 and found.json()["status"] not in ("running", "paused",
                                                                       "compensating"):
            return dict(found.json())
        return None

    return wait_for(ended, timeout=WAIT_S, what=f"{workflow_id} to end")


# --- traces ---------------------------------------------------------------------------------

ECHO = {"name": "obs-trace", "version": 1,
        "steps": [{"id": "echo", "task": "builtin.echo", "input": {"n": "${input.n}"}}]}


class Trace:
    """A Jaeger trace, read by service, kind, destination and parent."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.spans: list[dict[str, Any]] = data["spans"]
        self.processes: dict[str, Any] = data["processes"]

    @staticmethod
    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {t["key"]: t["value"] for t in span["tags"]}

    @staticmethod
    def parent(span: dict[str, Any]) -> str | None:
        return next((r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"),
                    None)

    def find(self, service: str, kind: str, *, destination: str | None = None,
             parent: str | None = None) -> list[dict[str, Any]]:
        found = []
        for span in self.spans:
            tags = self.tags(span)
            if (self.processes[span["processID"]]["serviceName"] == service
                    and tags.get("span.kind") == kind
                    and (destination is None or tags.get("messaging.destination.name")
                         == destination)
                    and (parent is None or self.parent(span) == parent)):
                found.append(span)
        return found

    def one(self, service: str, kind: str, **where: str) -> dict[str, Any]:
        found = self.find(service, kind, **where)
        assert found, f"no {kind} span of {service} with {where} in the trace: {self.summary()}"
        return found[0]

    def service(self, span: dict[str, Any]) -> str:
        return str(self.processes[span["processID"]]["serviceName"])

    def within(self, service: str, span: dict[str, Any], ancestor: dict[str, Any]) -> bool:
        """Whether ``ancestor`` is an ancestor of ``span`` with only spans of ``service``
        (or none) between them."""
        by_id = {s["spanID"]: s for s in self.spans}
        parent = self.parent(span)
        while parent is not None and parent in by_id:
            if parent == ancestor["spanID"]:
                return True
            if self.service(by_id[parent]) != service:
                return False
            parent = self.parent(by_id[parent])
        return False

    def summary(self) -> list[str]:
        return sorted(f"{self.processes[s['processID']]['serviceName']}:{s['operationName']}"
                      f"<-{self.parent(s)}:{s['spanID']}" for s in self.spans)


def test_one_trace_runs_through_every_service_each_hop_the_child_of_the_last(
    deployment: Deployment, tracing: Jaeger
) -> None:
    trace_id, caller = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    p = deployment.prefix
    with deployment.http() as http:
        _register(http, ECHO)
        workflow = _start(http, "obs-trace",
                          headers={"traceparent": f"00-{trace_id}-{caller}-01"})
        assert _ended(http, workflow)["status"] == "completed"

    def complete() -> Trace | None:
        """The trace once every hop read below has reached Jaeger: each service exports its
        spans on its own schedule, so the projector's last span can come before the
        worker's."""
        data = tracing.trace(trace_id)
        if data is None:
            return None
        found = Trace(data)
        done = [s for s in found.find("projector", "consumer", destination=f"{p}wf.events")
                if Trace.tags(s).get("foldflow.event_type") == "workflow.completed.v1"]
        hops = (found.find("gateway", "producer", destination=f"{p}wf.commands"),
                found.find("orchestrator", "consumer", destination=f"{p}wf.commands"),
                found.find("worker", "consumer", destination=f"{p}wf.tasks.builtin.echo"),
                found.find("worker", "producer", destination=f"{p}wf.results"),
                found.find("orchestrator", "consumer", destination=f"{p}wf.results"))
        return found if done and all(hops) else None

    trace = wait_for(complete, timeout=WAIT_S, what="every hop of the trace in Jaeger")

    [server] = trace.find("gateway", "server")  # one server span per request
    assert trace.parent(server) == caller
    assert Trace.tags(server)["http.route"] == "/v1/workflows"
    command = trace.one("gateway", "producer", destination=f"{p}wf.commands")
    assert trace.within("gateway", command, server)  # FastAPI's endpoint span between
    # A record's process span is the child of the span its headers carry: the `send` span
    # of the service that produced it.
    decide = trace.one("orchestrator", "consumer", destination=f"{p}wf.commands",
                       parent=command["spanID"])
    work = trace.one("worker", "consumer", destination=f"{p}wf.tasks.builtin.echo")
    assert trace.within("orchestrator", work, decide), trace.summary()
    result = trace.one("worker", "producer", destination=f"{p}wf.results",
                       parent=work["spanID"])
    react = trace.one("orchestrator", "consumer", destination=f"{p}wf.results",
                      parent=result["spanID"])
    projected = trace.find("projector", "consumer", destination=f"{p}wf.events")
    after_result = {Trace.tags(s)["foldflow.event_type"] for s in projected
                    if trace.within("orchestrator", s, react)}
    assert after_result >= {"step.completed.v1", "workflow.completed.v1"}, trace.summary()
    after_start = {Trace.tags(s)["foldflow.event_type"] for s in projected
                   if trace.within("orchestrator", s, decide)}
    assert "workflow.started.v1" in after_start, trace.summary()
    # Where the orchestrator has its own `send` spans (the Publisher's), they are named
    # after their topic: the worker's parent is the one of the task topic.
    sends = trace.find("orchestrator", "producer", parent=decide["spanID"])
    for send in sends:
        assert Trace.tags(send)["messaging.destination.name"].startswith(f"{p}wf.")
    if trace.parent(work) in {s["spanID"] for s in sends}:
        task = next(s for s in sends if s["spanID"] == trace.parent(work))
        assert Trace.tags(task)["messaging.destination.name"] == f"{p}wf.tasks.builtin.echo"

    # the messaging conventions, on the hops of the services this change instruments
    for span, group in ((work, f"{p}wf.worker.builtin.echo"),
                        (projected[0], f"{p}foldflow.projector")):
        tags = Trace.tags(span)
        assert tags["messaging.system"] == "kafka"
        assert tags["messaging.operation.type"] == "process"
        assert tags["messaging.consumer.group.name"] == group
        assert int(tags["messaging.destination.partition.id"]) >= 0
        assert int(tags["messaging.kafka.offset"]) >= 0
    for span in (command, result):
        tags = Trace.tags(span)
        assert tags["messaging.operation.type"] == "send"
        assert tags["messaging.system"] == "kafka"
        assert int(tags["messaging.kafka.offset"]) >= 0  # set from the broker's ack
    process = trace.processes[server["processID"]]
    resource = {t["key"]: t["value"] for t in process["tags"]}
    assert resource["deployment.environment.name"] == "e2e"  # OTEL_RESOURCE_ATTRIBUTES


# --- SLOs and alerts ------------------------------------------------------------------------

OK = {"name": "slo-ok", "version": 1,
      "steps": [{"id": "echo", "task": "builtin.echo", "input": {"n": "${input.n}"}}]}
# the definition asks for this failure: the handler fails without retry
BUSINESS = {"name": "slo-business", "version": 1,
            "steps": [{"id": "no", "task": "builtin.fail",
                       "input": {"times": 9, "retryable": False}}]}
# an infrastructure fault: every attempt outlives its timeout
INFRA = {"name": "slo-infra", "version": 1,
         "steps": [{"id": "slow", "task": "builtin.sleep", "input": {"seconds": 5},
                    "timeout": "1s",
                    "retry": {"max_attempts": 2, "initial_backoff": "100ms"}}]}


def _firing(metrics: Api, alert: str, **labels: str) -> list[dict[str, Any]]:
    matchers = ",".join([f'alertname="{alert}"', 'alertstate="firing"',
                         *(f'{k}="{v}"' for k, v in labels.items())])
    return metrics.query(f"ALERTS{{{matchers}}}")


def _received(alerts: Api, alert: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in alerts.alerts(alert)
            if all(a["labels"].get(k) == v for k, v in labels.items())]


def test_the_slo_rules_count_foldflows_faults_and_not_the_definitions_and_page(
    deployment: Deployment, metrics: Api, alerts: Api
) -> None:
    with deployment.http() as http:
        for definition in (OK, BUSINESS, INFRA):
            _register(http, definition)
        # Every outcome series of a registered definition starts at 0 in the projector:
        # Prometheus must have seen them before the first workflow ends.
        wait_for(lambda: metrics.value(
            'count(foldflow_workflow_outcomes_total{definition=~"slo-.*"})') == 3 * len(OUTCOMES),
            timeout=WAIT_S, what="the outcome series of the three definitions at 0")
        ids = {"ok": [_start(http, "slo-ok") for _ in range(3)],
               "business": [_start(http, "slo-business")],
               "infra": [_start(http, "slo-infra")]}
        ended = {kind: [_ended(http, w)["status"] for w in wids] for kind, wids in ids.items()}
    assert ended == {"ok": ["completed"] * 3, "business": ["failed"], "infra": ["failed"]}

    def outcomes() -> dict[tuple[str, str, str], float] | None:
        found = {(r["metric"]["definition"], r["metric"]["status"], r["metric"]["cause"]):
                 float(r["value"][1])
                 for r in metrics.query('foldflow_workflow_outcomes_total{definition=~"slo-.*"}'
                                        " > 0")}
        return found if sum(found.values()) == 5 else None

    counted = wait_for(outcomes, timeout=WAIT_S, what="five outcomes scraped")
    assert counted[("slo-ok", "completed", "none")] == 3
    assert counted[("slo-business", "failed", "business")] == 1
    [(_, _, infra_cause)] = [k for k in counted if k[0] == "slo-infra"]
    assert infra_cause in ("timeout", "error")  # timed out: by the worker or the timer

    ratio = 'foldflow:slo_errors:ratio_rate5m{slo="workflow_success"}'
    recorded = wait_for(lambda: (v := metrics.value(ratio)) and v > 0 and v,
                        timeout=WAIT_S, what="a workflow-success error ratio above 0")
    # one in five ended by Foldflow's fault; with the business failure it would be two
    assert 0.15 < recorded < 0.25, recorded
    assert metrics.value('foldflow:slo_objective:ratio{slo="workflow_success"}') == 0.99

    # 20% errors against a 1% budget: 20x in the 1h and 5m windows, past 14.4x: a page
    wait_for(lambda: _firing(metrics, "FoldflowWorkflowSuccessBudgetBurn", severity="critical"),
             timeout=WAIT_S, what="the burn-rate page to fire in Prometheus")
    page = wait_for(lambda: _received(alerts, "FoldflowWorkflowSuccessBudgetBurn",
                                      severity="critical"),
                    timeout=WAIT_S, what="the burn-rate page to reach Alertmanager")
    assert page[0]["labels"]["slo"] == "workflow_success"
    assert page[0]["annotations"]["runbook_url"] == (
        "docs/runbook.md#foldflowworkflowsuccessbudgetburn")

    # the API served every request: no errors, and its latency is recorded
    assert metrics.value('foldflow:slo_errors:ratio_rate5m{slo="api_availability"}') == 0
    mean = wait_for(lambda: metrics.value("foldflow:api_latency_seconds:mean_rate5m"),
                    timeout=WAIT_S, what="the API's mean latency")
    p99 = wait_for(lambda: metrics.value("foldflow:api_latency_seconds:p99_rate5m"),
                   timeout=WAIT_S, what="the API's p99 latency")
    assert 0 < mean <= p99 < 10
    assert not _firing(metrics, "FoldflowApiAvailabilityBudgetBurn")


def test_a_dead_letter_fires_its_alert_and_reaches_alertmanager(
    deployment: Deployment, metrics: Api, alerts: Api, stack: Settings
) -> None:
    commands = f"{deployment.prefix}wf.commands"
    producer = Producer(kafka_config(stack, {
                         "partitioner": "murmur2_random"}))

    def poison() -> None:
        producer.produce(commands, b"\x00not avro at all", key=b"poisoned")
        assert producer.flush(30) == 0

    dead = f'foldflow_dlq_messages_total{{topic="{commands}"}}'
    poison()
    wait_for(lambda: metrics.value(f"sum({dead})"), timeout=WAIT_S,
             what="the first dead letter counted")
    poison()  # and once the series exists, an increase
    wait_for(lambda: (metrics.value(f"sum({dead})") or 0) >= 2, timeout=WAIT_S,
             what="the second dead letter counted")

    fired = wait_for(lambda: _firing(metrics, "FoldflowDeadLettersGrowing", topic=commands),
                     timeout=WAIT_S, what="FoldflowDeadLettersGrowing to fire")
    kind = fired[0]["metric"]["reason_kind"]
    received = wait_for(lambda: _received(alerts, "FoldflowDeadLettersGrowing", topic=commands),
                        timeout=WAIT_S, what="the alert to reach Alertmanager")
    assert received[0]["labels"]["severity"] == "warning"
    assert received[0]["labels"]["reason_kind"] == kind
    assert received[0]["status"]["state"] in ("active", "suppressed")
    assert received[0]["annotations"]["runbook_url"] == (
        "docs/runbook.md#foldflowdeadlettersgrowing")


def test_a_killed_worker_is_an_outage_whose_recovery_mttr_measures(
    deployment: Deployment, metrics: Api
) -> None:
    pid = int((deployment.state_dir / "pids" / "worker.pid").read_text())
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: metrics.value('up{job="foldflow-worker"}') == 0, timeout=WAIT_S,
             what="Prometheus to see the worker down")
    time.sleep(12)  # at least one MTTR sample (every 10 s) sees it down
    up = deployment.foldflow("up")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for(lambda: metrics.value('up{job="foldflow-worker"}') == 1, timeout=WAIT_S,
             what="Prometheus to see the worker back")
    outage = time.monotonic() - killed

    recovered = wait_for(lambda: metrics.value("foldflow:outages_recovered:1h"),
                         timeout=WAIT_S, what="the recovery counted")
    assert recovered == 1
    mttr = metrics.value("foldflow:mttr_seconds:1h")
    assert mttr is not None and 10 <= mttr <= outage + 20, (mttr, outage)
    assert metrics.value('foldflow:slo_objective:seconds{slo="mttr"}') == 300
