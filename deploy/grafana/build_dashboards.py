# ruff: noqa: E501  (PromQL queries read best on one line each)
"""Writes deploy/grafana/dashboards/*.json from the panel lists below (run it after a change).

    .venv/bin/python deploy/grafana/build_dashboards.py

Every query uses the metric names of foldflow/observability/metrics.py and the recording
rules of deploy/prometheus/slo.yml; a unit test checks the names exist and that the
committed JSON is what this script writes.

The dashboards import anywhere: no datasource uid is written in them. Each has a
``datasource`` template variable (any Prometheus; the provisioned one by default) and
``__inputs`` for Grafana's import dialog, plus ``instance``, ``definition`` and
``task_type`` variables where its queries use them; every panel has a unit.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VERSION = "10.4.0"


@dataclass(frozen=True)
class Panel:
    """One panel: a title, PromQL queries (expr, legend), a unit and a kind."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str
    kind: str = "timeseries"  # or "stat"
    description: str = ""


@dataclass(frozen=True)
class Variable:
    """A template variable of label values."""

    name: str
    label: str
    query: str


VARIABLES = (
    Variable("instance", "Instance", 'label_values(up{job=~"foldflow-.*"}, instance)'),
    Variable("definition", "Definition", "label_values(foldflow_workflows_started_total, definition)"),
    Variable("task_type", "Task type", "label_values(foldflow_step_attempts_total, task_type)"),
)


def _panel(panel: Panel, index: int, y: int, x: int, width: int) -> dict[str, Any]:
    height = 4 if panel.kind == "stat" else 8
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if panel.kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": DATASOURCE}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def _templating(panels: list[Panel]) -> list[dict[str, Any]]:
    used = " ".join(expr for p in panels for expr, _ in p.queries)
    variables: list[dict[str, Any]] = [{
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }]
    for v in VARIABLES:
        if not re.search(rf"\${v.name}\b", used):
            continue
        variables.append({
            "name": v.name,
            "label": v.label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": v.query,
            "query": {"query": v.query, "refId": f"{v.name}-values"},
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "refresh": 2,
            "sort": 1,
            "hide": 0,
            "options": [],
        })
    return variables


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    """A Grafana dashboard: stats four to a row on top, graphs two to a row below."""
    built: list[dict[str, Any]] = []
    y, x = 0, 0
    stats = [p for p in panels if p.kind == "stat"]
    graphs = [p for p in panels if p.kind != "stat"]
    for panel in stats:
        built.append(_panel(panel, len(built), y, x, 6))
        x = (x + 6) % 24
        if x == 0:
            y += 4
    if x:
        y, x = y + 4, 0
    for panel in graphs:
        built.append(_panel(panel, len(built), y, x, 12))
        x = (x + 12) % 24
        if x == 0:
            y += 8
    kinds = sorted({p.kind for p in panels})
    return {
        "__inputs": [{
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes Foldflow's services",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": kind, "name": kind.title(), "version": ""} for kind in kinds),
        ],
        "uid": uid,
        "title": title,
        "tags": ["foldflow"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "editable": True,
        "templating": {"list": _templating(panels)},
        "panels": built,
    }


RATE = "[$__rate_interval]"
INST = 'instance=~"$instance"'
DEFN = 'definition=~"$definition"'
TASK = 'task_type=~"$task_type"'
API = 'route=~"/v1/.*"'

OVERVIEW = [
    Panel("Workflows started /s", ((f"sum(rate(foldflow_workflows_started_total{{{DEFN},{INST}}}{RATE}))", "started"),), "ops", "stat"),
    Panel("Active workflows", ((f"sum(foldflow_active_workflows{{{INST}}})", "active"),), "none", "stat"),
    Panel("Dead letters (1h)", ((f"sum(increase(foldflow_dlq_messages_total{{{INST}}}[1h]))", "dlq"),), "none", "stat"),
    Panel("Services up", ((f'sum(up{{job=~"foldflow-.*",{INST}}})', "up"),), "none", "stat"),
    Panel("Workflows finished by status", (
        (f"sum by (status) (rate(foldflow_workflows_finished_total{{{DEFN},{INST}}}{RATE}))", "{{status}}"),), "ops"),
    Panel("Gateway requests by status", (
        (f"sum by (status) (rate(foldflow_http_requests_total{{{INST}}}{RATE}))", "{{status}}"),), "reqps"),
    Panel("Gateway latency p95 by route", ((
        f"histogram_quantile(0.95, sum by (le, route) (rate(foldflow_http_request_duration_seconds_bucket{{{INST}}}{RATE})))",
        "{{route}}"),), "s"),
    Panel("Max consumer lag by group", (
        (f"max by (group) (foldflow_consumer_lag_messages{{{INST}}})", "{{group}}"),), "none"),
    Panel("Messages handled by outcome", (
        (f"sum by (outcome) (rate(foldflow_messages_handled_total{{{INST}}}{RATE}))", "{{outcome}}"),), "ops"),
    Panel("Projection lag p99", ((
        f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{{{INST}}}{RATE})))",
        "p99"),), "s"),
]

WORKFLOWS = [
    Panel("Started by definition", (
        (f"sum by (definition) (rate(foldflow_workflows_started_total{{{DEFN},{INST}}}{RATE}))", "{{definition}}"),), "ops"),
    Panel("Finished by definition and status", ((
        f"sum by (definition, status) (rate(foldflow_workflows_finished_total{{{DEFN},{INST}}}{RATE}))",
        "{{definition}} {{status}}"),), "ops"),
    Panel("Failure ratio by definition", ((
        f'sum by (definition) (rate(foldflow_workflows_finished_total{{status=~"failed|compensation_failed",{DEFN},{INST}}}{RATE}))'
        f" / sum by (definition) (rate(foldflow_workflows_finished_total{{{DEFN},{INST}}}{RATE}))",
        "{{definition}}"),), "percentunit"),
    Panel("Ended by cause (once per workflow)", ((
        f"sum by (status, cause) (rate(foldflow_workflow_outcomes_total{{{DEFN},{INST}}}{RATE}))",
        "{{status}} {{cause}}"),), "ops",
        description="cause timeout, error or deadline: Foldflow's fault (docs/slo.md)"),
    Panel("Active workflows", ((f"sum(foldflow_active_workflows{{{INST}}})", "active"),), "none"),
    Panel("Step duration by task type (p50, p95)", (
        (f"histogram_quantile(0.5, sum by (le, task_type) (rate(foldflow_step_duration_seconds_bucket{{{TASK},{INST}}}{RATE})))",
         "p50 {{task_type}}"),
        (f"histogram_quantile(0.95, sum by (le, task_type) (rate(foldflow_step_duration_seconds_bucket{{{TASK},{INST}}}{RATE})))",
         "p95 {{task_type}}"),
    ), "s"),
    Panel("Step attempts by task type and outcome", ((
        f"sum by (task_type, outcome) (rate(foldflow_step_attempts_total{{{TASK},{INST}}}{RATE}))",
        "{{task_type}} {{outcome}}"),), "ops"),
    Panel("Orchestrator inputs ignored by reason", (
        (f"sum by (reason) (rate(foldflow_inputs_ignored_total{{{INST}}}{RATE}))", "{{reason}}"),), "ops"),
    Panel("Circuit breakers (0 closed, 1 half-open, 2 open)", (
        (f"max by (name) (foldflow_circuit_breaker_state{{{INST}}})", "{{name}}"),), "none"),
]

KAFKA_CONSUMERS = [
    Panel("Consumer lag by group and partition", (
        (f"sum by (group, partition) (foldflow_consumer_lag_messages{{{INST}}})", "{{group}} p{{partition}}"),), "none"),
    Panel("Total lag by topic", ((f"sum by (topic) (foldflow_consumer_lag_messages{{{INST}}})", "{{topic}}"),), "none"),
    Panel("Messages handled by topic and handler", ((
        f"sum by (topic, handler) (rate(foldflow_messages_handled_total{{{INST}}}{RATE}))",
        "{{topic}} {{handler}}"),), "ops"),
    Panel("Handling errors and dead letters", ((
        f'sum by (topic, outcome) (rate(foldflow_messages_handled_total{{outcome=~"error|dlq",{INST}}}{RATE}))',
        "{{topic}} {{outcome}}"),), "ops"),
    Panel("Handling latency p95 by handler", ((
        f"histogram_quantile(0.95, sum by (le, handler) (rate(foldflow_message_handling_seconds_bucket{{{INST}}}{RATE})))",
        "{{handler}}"),), "s"),
    Panel("Dead letters by origin and reason", ((
        f"sum by (topic, reason_kind) (increase(foldflow_dlq_messages_total{{{INST}}}{RATE}))",
        "{{topic}} {{reason_kind}}"),), "none"),
    Panel("Orchestrator transactions: first input to committed, and the commit (p95)", (
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_transaction_duration_seconds_bucket{{{INST}}}{RATE})))",
         "open"),
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_transaction_commit_seconds_bucket{{{INST}}}{RATE})))",
         "commit"),
    ), "s"),
    Panel("Orchestrator transactions committed and aborted", (
        (f"sum(rate(foldflow_transaction_commits_total{{{INST}}}{RATE}))", "committed"),
        (f"sum by (reason) (rate(foldflow_transaction_aborts_total{{{INST}}}{RATE}))", "aborted: {{reason}}"),
    ), "ops"),
]

PROJECTIONS = [
    Panel("Events applied /s", ((f"sum(rate(foldflow_projection_events_applied_total{{{INST}}}{RATE}))", "applied"),),
          "ops", "stat"),
    Panel("Projection lag p99", ((
        f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{{{INST}}}{RATE})))",
        "p99"),), "s", "stat"),
    Panel("Sequence gaps (1h)", ((f"sum(increase(foldflow_projection_gaps_total{{{INST}}}[1h]))", "gaps"),),
          "none", "stat"),
    Panel("Events applied", ((f"sum(rate(foldflow_projection_events_applied_total{{{INST}}}{RATE}))", "events/s"),),
          "ops"),
    Panel("Projection lag (p50, p99)", (
        (f"histogram_quantile(0.5, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{{{INST}}}{RATE})))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{{{INST}}}{RATE})))", "p99"),
    ), "s"),
    Panel("Age of last applied event by partition", (
        (f"max by (partition) (foldflow_projection_partition_lag_seconds{{{INST}}})", "p{{partition}}"),), "s"),
    Panel("Batch size (p50, p95)", (
        (f"histogram_quantile(0.5, sum by (le) (rate(foldflow_projection_batch_size_events_bucket{{{INST}}}{RATE})))", "p50"),
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_projection_batch_size_events_bucket{{{INST}}}{RATE})))", "p95"),
    ), "none"),
    Panel("Batch duration p95 and mean", (
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_projection_batch_seconds_bucket{{{INST}}}{RATE})))", "p95"),
        (f"sum(rate(foldflow_projection_batch_seconds_sum{{{INST}}}{RATE})) / sum(rate(foldflow_projection_batch_seconds_count{{{INST}}}{RATE}))",
         "mean"),
    ), "s"),
    Panel("Gaps", ((f"sum(increase(foldflow_projection_gaps_total{{{INST}}}{RATE}))", "gaps"),), "none"),
]


def _slo(name: str) -> str:
    return f'slo="{name}"'


SLO_NAMES = (("workflow_success", "Workflow success"), ("api_availability", "API availability"),
             ("api_latency", "API latency"))

SLOS = [
    *(Panel(f"{title} (30d)", ((f"1 - foldflow:slo_errors:ratio_rate30d{{{_slo(slo)}}}", "30d"),),
            "percentunit", "stat",
            description=f"objective: foldflow:slo_objective:ratio{{{_slo(slo)}}}")
      for slo, title in SLO_NAMES),
    Panel("MTTR (30d)", (("foldflow:mttr_seconds:30d", "mttr"),), "s", "stat",
          description="objective: foldflow:slo_objective:seconds"),
    *(Panel(f"{title}: error budget left (30d)",
            ((f"foldflow:slo_error_budget_remaining:ratio{{{_slo(slo)}}}", "left"),),
            "percentunit", "stat")
      for slo, title in SLO_NAMES),
    Panel("Outages recovered (30d)", (("foldflow:outages_recovered:30d", "outages"),), "none", "stat"),
    Panel("Burn rate (1h) by objective", ((
        "foldflow:slo_errors:ratio_rate1h / on (slo) (1 - foldflow:slo_objective:ratio)", "{{slo}}"),), "none",
        description="1 spends the 30-day budget in 30 days; 14.4 pages"),
    Panel("Error ratio (5m) vs budget", (
        ("foldflow:slo_errors:ratio_rate5m", "{{slo}}"),
        ("1 - foldflow:slo_objective:ratio", "budget {{slo}}"),
    ), "percentunit"),
    Panel("API latency: mean and p99 (5m)", (
        ("foldflow:api_latency_seconds:mean_rate5m", "mean"),
        ("foldflow:api_latency_seconds:p99_rate5m", "p99"),
    ), "s", description="/v1 requests, long-polls aside"),
    Panel("Workflows ended by cause", ((
        f"sum by (cause) (rate(foldflow_workflow_outcomes_total{{{DEFN}}}{RATE}))", "{{cause}}"),), "ops",
        description="timeout, error and deadline count against the objective"),
    Panel("API requests by status (/v1)", ((
        f"sum by (status) (rate(foldflow_http_requests_total{{{API}}}{RATE}))", "{{status}}"),), "reqps"),
    Panel("MTTR (1h, 1d) vs objective", (
        ("foldflow:mttr_seconds:1h", "1h"),
        ("foldflow:mttr_seconds:1d", "1d"),
        ("foldflow:slo_objective:seconds", "objective"),
    ), "s"),
    Panel("Services down", (("foldflow:service_down_seconds > 0", "{{job}}"),), "s",
          description="seconds down per 10 s sample"),
]

DASHBOARDS = {
    "overview": dashboard("foldflow-overview", "Foldflow: overview", OVERVIEW),
    "workflows": dashboard("foldflow-workflows", "Foldflow: workflows", WORKFLOWS),
    "kafka-consumers": dashboard("foldflow-kafka-consumers", "Foldflow: Kafka consumers",
                                 KAFKA_CONSUMERS),
    "projections": dashboard("foldflow-projections", "Foldflow: projections", PROJECTIONS),
    "slos": dashboard("foldflow-slos", "Foldflow: SLOs", SLOS),
}


def render(name: str) -> str:
    """The JSON text of one dashboard, as committed."""
    return json.dumps(DASHBOARDS[name], indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write every dashboard; print what changed."""
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        path = DASHBOARDS_DIR / f"{name}.json"
        text = render(name)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
