"""Dashboards, recording and alert rules use only metrics that exist; every alert has a
runbook entry and promtool unit tests that make it fire and keep it quiet (when installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from foldflow.observability import metrics
from foldflow.settings import Settings

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


RULE_FILES = ("alerts.yml", "slo.yml")


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for name in RULE_FILES
        for group in yaml.safe_load((DEPLOY / "prometheus" / name).read_text())["groups"]
        for rule in group["rules"]
    ]


def _alert_queries() -> list[str]:
    return [rule["expr"] for rule in _rules()]


def test_the_metric_catalog_is_read_correctly() -> None:
    names = _exposed_names()
    assert "foldflow_workflows_started_total" in names
    assert "foldflow_projection_lag_seconds_bucket" in names
    assert "foldflow_active_workflows" in names


def test_every_metric_in_the_dashboards_exists() -> None:
    exposed = _exposed_names()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    queries = _dashboard_queries()
    assert set(queries) == {"overview", "workflows", "kafka-consumers", "projections", "slos"}
    for board, exprs in queries.items():
        assert exprs, f"{board} has no queries"
        unknown = {n for expr in exprs for n in NAME.findall(expr)} - exposed
        assert unknown == set(), f"{board} uses metrics that do not exist: {sorted(unknown)}"
        unrecorded = {n for e in exprs for n in re.findall(r"\bfoldflow:[\w:]+", e)} - recorded
        assert unrecorded == set(), f"{board} reads recordings nobody writes: {unrecorded}"


def test_every_metric_in_the_alert_rules_exists() -> None:
    exprs = _alert_queries()
    used = {n for expr in exprs for n in NAME.findall(expr)}
    assert used, "no foldflow metric in the alert rules"
    assert used - _exposed_names() == set()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    read = {n for expr in exprs for n in re.findall(r"\bfoldflow:[\w:]+", expr)}
    assert read <= recorded, f"rules read recordings nobody writes: {sorted(read - recorded)}"


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = (REPO / "docs/runbook.md").read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)}
    for rule in _rules():
        if "alert" not in rule:
            continue
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/runbook.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, (
            f"{rule['alert']}: docs/runbook.md has no '## {rule['alert']}' section")
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def _anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rules, enough for ours)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (DEPLOY / "prometheus/tests").glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts no test makes fire"
    assert alerts - quiet == set(), "alerts no test keeps quiet"


def _slo_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_slo_rules",
                                                  DEPLOY / "prometheus/build_slo_rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_slo_rules_are_what_the_builder_writes_with_the_default_objectives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("FOLDFLOW_SLO_"):
            monkeypatch.delenv(name)
    builder = _slo_builder()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (DEPLOY / "prometheus/slo.yml").read_text() == builder.render(defaults), (
        "slo.yml is stale: run .venv/bin/python deploy/prometheus/build_slo_rules.py")


def test_objectives_are_settings_and_a_latency_threshold_must_be_a_bucket_bound() -> None:
    builder = _slo_builder()
    tighter = Settings(_env_file=None, slo_workflow_success=0.995,  # type: ignore[call-arg]
                       slo_api_latency_threshold_s=0.5)
    text = builder.render(tighter)
    assert "vector(0.995)" in text and '> 0.072' in text  # 14.4 x 0.005
    assert 'le="0.5"' in text
    with pytest.raises(SystemExit, match=r"not a bucket bound.*0\.25"):
        builder.render(Settings(_env_file=None, slo_api_latency_threshold_s=0.3))  # type: ignore[call-arg]


def test_the_alerts_cover_what_operators_need() -> None:
    exprs = " ".join(_alert_queries())
    names = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert {"FoldflowServiceDown", "FoldflowDeadLettersGrowing", "FoldflowConsumerLagHigh",
            "FoldflowProjectionLagHigh", "FoldflowProjectionGaps",
            "FoldflowWorkflowsFailing", "FoldflowForeignTenantCommands",
            "FoldflowWorkflowSuccessBudgetBurn", "FoldflowApiAvailabilityBudgetBurn",
            "FoldflowApiLatencyBudgetBurn", "FoldflowMttrAboveObjective"} <= names
    for metric in ("foldflow_dlq_messages_total", "foldflow_consumer_lag_messages",
                   "foldflow_projection_lag_seconds_bucket", "foldflow_projection_gaps_total",
                   "foldflow_workflows_finished_total", "foldflow_inputs_ignored_total"):
        assert metric in exprs


def test_committed_dashboards_are_what_the_builder_writes() -> None:
    builder = _builder()
    for name in builder.DASHBOARDS:
        committed = (DEPLOY / "grafana/dashboards" / f"{name}.json").read_text()
        assert committed == builder.render(name), (
            f"{name}.json is stale: run .venv/bin/python deploy/grafana/build_dashboards.py")


def test_dashboards_import_anywhere() -> None:
    """No datasource uid is written in them: a datasource variable and __inputs instead;
    every variable a query uses is defined; every panel says its unit."""
    exposed = _exposed_names()
    for path in (DEPLOY / "grafana/dashboards").glob("*.json"):
        text = path.read_text()
        board = json.loads(text)
        assert '"uid": "prometheus"' not in text, path
        [source] = board["__inputs"]
        assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, path
            assert panel["fieldConfig"]["defaults"]["unit"], f"{path.name}: {panel['title']}"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= set(variables), f"{path.name}: {panel['title']} uses {used}"
        for name, variable in variables.items():
            if name == "datasource":
                continue
            assert variable["datasource"]["uid"] == "${datasource}"
            assert variable["includeAll"] and variable["allValue"] == ".*"
            assert set(NAME.findall(variable["definition"])) <= exposed
    workflows = json.loads((DEPLOY / "grafana/dashboards/workflows.json").read_text())
    names = {v["name"] for v in workflows["templating"]["list"]}
    assert {"datasource", "instance", "definition", "task_type"} <= names


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt install prometheus)")
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rule_paths = [str(DEPLOY / "prometheus" / name) for name in RULE_FILES]
    rules = subprocess.run([PROMTOOL, "check", "rules", *rule_paths],
                           capture_output=True, text=True, check=False)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The config names the rules by their path in the container; check it beside copies.
    config = (DEPLOY / "prometheus/prometheus.yml").read_text()
    for name in RULE_FILES:
        config = config.replace(f"/etc/prometheus/{name}", name)
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt install prometheus)")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("test_file", sorted(p.name for p in (DEPLOY / "prometheus/tests").glob(
    "*.test.yml")))
def test_promtool_unit_tests_of_the_rules_pass(test_file: str) -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "test", "rules", test_file],
                            cwd=DEPLOY / "prometheus/tests", capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
