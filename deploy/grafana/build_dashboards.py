# ruff: noqa: E501  (PromQL queries read best on one line each)
"""Writes deploy/grafana/dashboards/*.json from the panel lists below (run it after a change).

    .venv/bin/python deploy/grafana/build_dashboards.py

Every query uses the metric names of foldflow/observability/metrics.py; a unit test checks
the names exist and that the committed JSON is what this script writes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


@dataclass(frozen=True)
class Panel:
    """One panel: a title, PromQL queries (expr, legend), a unit and a kind."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


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
    return {
        "uid": uid,
        "title": title,
        "tags": ["foldflow"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "editable": True,
        "panels": built,
    }


RATE = "[$__rate_interval]"

OVERVIEW = [
    Panel("Workflows started /s", ((f"sum(rate(foldflow_workflows_started_total{RATE}))", "started"),), "ops", "stat"),
    Panel("Active workflows", (("sum(foldflow_active_workflows)", "active"),), kind="stat"),
    Panel("Dead letters (1h)", (("sum(increase(foldflow_dlq_messages_total[1h]))", "dlq"),), kind="stat"),
    Panel("Services up", (('sum(up{job=~"foldflow-.*"})', "up"),), kind="stat"),
    Panel("Workflows finished by status", (
        (f"sum by (status) (rate(foldflow_workflows_finished_total{RATE}))", "{{status}}"),), "ops"),
    Panel("Gateway requests by status", (
        (f"sum by (status) (rate(foldflow_http_requests_total{RATE}))", "{{status}}"),), "reqps"),
    Panel("Gateway latency p95 by route", ((
        f"histogram_quantile(0.95, sum by (le, route) (rate(foldflow_http_request_duration_seconds_bucket{RATE})))",
        "{{route}}"),), "s"),
    Panel("Max consumer lag by group", (
        ("max by (group) (foldflow_consumer_lag)", "{{group}}"),)),
    Panel("Messages handled by outcome", (
        (f"sum by (outcome) (rate(foldflow_messages_handled_total{RATE}))", "{{outcome}}"),), "ops"),
    Panel("Projection lag p99", ((
        f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{RATE})))",
        "p99"),), "s"),
]

WORKFLOWS = [
    Panel("Started by definition", (
        (f"sum by (definition) (rate(foldflow_workflows_started_total{RATE}))", "{{definition}}"),), "ops"),
    Panel("Finished by definition and status", ((
        f"sum by (definition, status) (rate(foldflow_workflows_finished_total{RATE}))",
        "{{definition}} {{status}}"),), "ops"),
    Panel("Failure ratio by definition", ((
        f'sum by (definition) (rate(foldflow_workflows_finished_total{{status=~"failed|compensation_failed"}}{RATE}))'
        f" / sum by (definition) (rate(foldflow_workflows_finished_total{RATE}))",
        "{{definition}}"),), "percentunit"),
    Panel("Active workflows", (("sum(foldflow_active_workflows)", "active"),)),
    Panel("Step duration by task type (p50, p95)", (
        (f"histogram_quantile(0.5, sum by (le, task_type) (rate(foldflow_step_duration_seconds_bucket{RATE})))",
         "p50 {{task_type}}"),
        (f"histogram_quantile(0.95, sum by (le, task_type) (rate(foldflow_step_duration_seconds_bucket{RATE})))",
         "p95 {{task_type}}"),
    ), "s"),
    Panel("Step attempts by task type and outcome", ((
        f"sum by (task_type, outcome) (rate(foldflow_step_attempts_total{RATE}))",
        "{{task_type}} {{outcome}}"),), "ops"),
    Panel("Orchestrator inputs ignored by reason", (
        (f"sum by (reason) (rate(foldflow_inputs_ignored_total{RATE}))", "{{reason}}"),), "ops"),
    Panel("Circuit breakers (0 closed, 1 half-open, 2 open)", (
        ("max by (name) (foldflow_circuit_breaker_state)", "{{name}}"),)),
]

KAFKA_CONSUMERS = [
    Panel("Consumer lag by group and partition", (
        ("sum by (group, partition) (foldflow_consumer_lag)", "{{group}} p{{partition}}"),)),
    Panel("Total lag by topic", (("sum by (topic) (foldflow_consumer_lag)", "{{topic}}"),)),
    Panel("Messages handled by topic and handler", ((
        f"sum by (topic, handler) (rate(foldflow_messages_handled_total{RATE}))",
        "{{topic}} {{handler}}"),), "ops"),
    Panel("Handling errors and dead letters", ((
        f'sum by (topic, outcome) (rate(foldflow_messages_handled_total{{outcome=~"error|dlq"}}{RATE}))',
        "{{topic}} {{outcome}}"),), "ops"),
    Panel("Handling latency p95 by handler", ((
        f"histogram_quantile(0.95, sum by (le, handler) (rate(foldflow_message_handling_seconds_bucket{RATE})))",
        "{{handler}}"),), "s"),
    Panel("Dead letters by origin and reason", ((
        f"sum by (topic, reason_kind) (increase(foldflow_dlq_messages_total{RATE}))",
        "{{topic}} {{reason_kind}}"),)),
]

PROJECTIONS = [
    Panel("Events applied /s", ((f"sum(rate(foldflow_projection_events_applied_total{RATE}))", "applied"),),
          "ops", "stat"),
    Panel("Projection lag p99", ((
        f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{RATE})))",
        "p99"),), "s", "stat"),
    Panel("Sequence gaps (1h)", (("sum(increase(foldflow_projection_gaps_total[1h]))", "gaps"),),
          kind="stat"),
    Panel("Events applied", ((f"sum(rate(foldflow_projection_events_applied_total{RATE}))", "events/s"),),
          "ops"),
    Panel("Projection lag (p50, p99)", (
        (f"histogram_quantile(0.5, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{RATE})))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(foldflow_projection_lag_seconds_bucket{RATE})))", "p99"),
    ), "s"),
    Panel("Age of last applied event by partition", (
        ("max by (partition) (foldflow_projection_partition_lag_seconds)", "p{{partition}}"),), "s"),
    Panel("Batch size (p50, p95)", (
        (f"histogram_quantile(0.5, sum by (le) (rate(foldflow_projection_batch_size_bucket{RATE})))", "p50"),
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_projection_batch_size_bucket{RATE})))", "p95"),
    )),
    Panel("Batch duration p95 and mean", (
        (f"histogram_quantile(0.95, sum by (le) (rate(foldflow_projection_batch_seconds_bucket{RATE})))", "p95"),
        (f"sum(rate(foldflow_projection_batch_seconds_sum{RATE})) / sum(rate(foldflow_projection_batch_seconds_count{RATE}))",
         "mean"),
    ), "s"),
    Panel("Gaps", ((f"sum(increase(foldflow_projection_gaps_total{RATE}))", "gaps"),)),
]

DASHBOARDS = {
    "overview": dashboard("foldflow-overview", "Foldflow: overview", OVERVIEW),
    "workflows": dashboard("foldflow-workflows", "Foldflow: workflows", WORKFLOWS),
    "kafka-consumers": dashboard("foldflow-kafka-consumers", "Foldflow: Kafka consumers",
                                 KAFKA_CONSUMERS),
    "projections": dashboard("foldflow-projections", "Foldflow: projections", PROJECTIONS),
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
