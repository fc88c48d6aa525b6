"""Dashboards and alert rules use only metrics that exist; promtool agrees (when installed)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from foldflow.observability import metrics

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
NAME = re.compile(r"\bfoldflow_\w+")


def _exposed_names() -> set[str]:
    """Every series name metrics.py exposes (counters add _total, histograms their parts)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        base = value._name
        kind = value._type
        if kind == "counter":
            names.add(f"{base}_total")
        elif kind == "histogram":
            names.update(f"{base}_{part}" for part in ("bucket", "sum", "count"))
        else:
            names.add(base)
    return names


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards",
                                                  DEPLOY / "grafana/build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def _dashboard_queries() -> dict[str, list[str]]:
    queries: dict[str, list[str]] = {}
    for path in sorted((DEPLOY / "grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        queries[path.stem] = [t["expr"] for p in board["panels"] for t in p["targets"]]
    return queries


def _alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_metric_catalog_is_read_correctly() -> None:
    names = _exposed_names()
    assert "foldflow_workflows_started_total" in names
    assert "foldflow_projection_lag_seconds_bucket" in names
    assert "foldflow_active_workflows" in names


def test_every_metric_in_the_dashboards_exists() -> None:
    exposed = _exposed_names()
    queries = _dashboard_queries()
    assert set(queries) == {"overview", "workflows", "kafka-consumers", "projections"}
    for board, exprs in queries.items():
        assert exprs, f"{board} has no queries"
        unknown = {n for expr in exprs for n in NAME.findall(expr)} - exposed
        assert unknown == set(), f"{board} uses metrics that do not exist: {sorted(unknown)}"


def test_every_metric_in_the_alert_rules_exists() -> None:
    exprs = _alert_queries()
    used = {n for expr in exprs for n in NAME.findall(expr)}
    assert used, "no foldflow metric in the alert rules"
    assert used - _exposed_names() == set()


def test_the_alerts_cover_what_operators_need() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    exprs = " ".join(_alert_queries())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"FoldflowServiceDown", "FoldflowDeadLettersGrowing", "FoldflowConsumerLagHigh",
            "FoldflowProjectionLagHigh", "FoldflowProjectionGaps",
            "FoldflowWorkflowsFailing", "FoldflowForeignTenantCommands"} <= names
    for metric in ("foldflow_dlq_messages_total", "foldflow_consumer_lag",
                   "foldflow_projection_lag_seconds_bucket", "foldflow_projection_gaps_total",
                   "foldflow_workflows_finished_total", "foldflow_inputs_ignored_total"):
        assert metric in exprs


def test_committed_dashboards_are_what_the_builder_writes() -> None:
    builder = _builder()
    for name in builder.DASHBOARDS:
        committed = (DEPLOY / "grafana/dashboards" / f"{name}.json").read_text()
        assert committed == builder.render(name), (
            f"{name}.json is stale: run .venv/bin/python deploy/grafana/build_dashboards.py")


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for path in (DEPLOY / "grafana/dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        assert {p["datasource"]["uid"] for p in board["panels"]} == {uid}, path


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt install prometheus)")
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rules = subprocess.run([PROMTOOL, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
                           capture_output=True, text=True, check=False)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The config names the rules by their path in the container; check it beside a copy.
    config = (DEPLOY / "prometheus/prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/alerts.yml",
                                                            "alerts.yml"))
    shutil.copy(DEPLOY / "prometheus/alerts.yml", tmp_path / "alerts.yml")
    checked = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
