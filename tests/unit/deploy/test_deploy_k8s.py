"""deploy/k8s: every manifest validates against the Kubernetes schemas (kubernetes-validate),
every container runs a real `foldflow` command with valid settings, runs locked down with
resources, probes and scrape settings that fit the ports it serves; the overlays for the
Prometheus Operator and KEDA point at what the base deploys."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from foldflow.cli.introspect import resolve
from foldflow.settings import Settings
from foldflow.topics import Topology
from foldflow.workers.builtin import registry as builtin_registry

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS: list[dict[str, Any]] = [
    doc
    for name in KUSTOMIZATION["resources"]
    for doc in yaml.safe_load_all((K8S / name).read_text())
]
SECRETS = {d["metadata"]["name"]: d for d in yaml.safe_load_all(
    (K8S / "secrets.example.yaml").read_text())}
CONFIG = next(d for d in DOCS if d["kind"] == "ConfigMap")["data"]
WORKLOADS = {d["metadata"]["name"]: d for d in DOCS if d["kind"] in ("Deployment", "Job")}
DEPLOYMENTS = {n: w for n, w in WORKLOADS.items() if w["kind"] == "Deployment"}
OVERLAYS = K8S / "overlays"
FIELDS = {f"FOLDFLOW_{f.upper()}" for f in Settings.model_fields}


def _overlay(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kustomization = yaml.safe_load((OVERLAYS / name / "kustomization.yaml").read_text())
    docs = [doc for resource in kustomization["resources"] if resource != "../.."
            for doc in yaml.safe_load_all((OVERLAYS / name / resource).read_text())]
    return kustomization, docs


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def _argvs(container: dict[str, Any]) -> list[list[str]]:
    if container.get("command") == ["sh", "-c"]:
        [script] = container["args"]
        parts = [shlex.split(p) for p in script.split("&&")]
        assert all(p[0] == "foldflow" for p in parts), script
        return [p[1:] for p in parts]
    assert "command" not in container  # the image's entrypoint is `foldflow`
    return [container["args"]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    env = dict(CONFIG)
    for ref in container["envFrom"]:
        if "secretRef" in ref:
            env.update(SECRETS[ref["secretRef"]["name"]]["stringData"])
    env["FOLDFLOW_DATABASE_URL"] = "postgresql+psycopg://u:p@db:5432/foldflow"
    env.pop("FOLDFLOW_API_KEYS", None)  # the example's placeholder digest
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_every_manifest_file_is_in_the_kustomization() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert files == set(KUSTOMIZATION["resources"])
    assert {"foldflow-init", "foldflow-orchestrator", "foldflow-worker", "foldflow-projector",
            "foldflow-gateway"} == set(WORKLOADS)


@pytest.mark.parametrize("doc", [*DOCS, *SECRETS.values()],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_containers_run_real_commands_with_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _container(WORKLOADS[name])
    for argv in _argvs(container):
        assert resolve(argv) is not None, f"{name}: `foldflow {' '.join(argv)}` does not exist"
    env = _env(container)
    names = set(env) | {e["name"] for e in container.get("env", [])}
    assert names - FIELDS == set()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
    refs = {(next(iter(r)), next(iter(r.values()))["name"]) for r in container["envFrom"]}
    expected = {("configMapRef", "foldflow-config"), ("secretRef", "foldflow-kafka"),
                ("secretRef", "foldflow-database")}
    if name == "foldflow-gateway":
        expected.add(("secretRef", "foldflow-gateway"))
    assert refs == expected
    for ref in container["envFrom"]:
        if "secretRef" in ref and ref["secretRef"]["name"] != "foldflow-database":
            assert ref["secretRef"].get("optional") is True


def test_credentials_live_in_secrets_never_in_the_config_map() -> None:
    assert not {"FOLDFLOW_DATABASE_URL", "FOLDFLOW_API_KEYS", "FOLDFLOW_JWT_SECRET",
                "FOLDFLOW_JWT_PUBLIC_KEY"} & set(CONFIG)
    assert set(SECRETS) == {"foldflow-database", "foldflow-kafka", "foldflow-gateway"}
    for secret in SECRETS.values():
        assert secret["type"] == "Opaque"
        assert set(secret["stringData"]) <= FIELDS, secret["metadata"]["name"]
    assert "FOLDFLOW_DATABASE_URL" in SECRETS["foldflow-database"]["stringData"]
    assert {"FOLDFLOW_API_KEYS", "FOLDFLOW_JWT_SECRET"} <= set(
        SECRETS["foldflow-gateway"]["stringData"])


def _dockerfile_uid() -> int:
    text = (REPO / "deploy/Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):\d+$", text, re.MULTILINE)
    return int(user)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_pod_runs_locked_down_with_resources(name: str) -> None:
    pod = WORKLOADS[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = _container(WORKLOADS[name])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # the read-only root leaves /tmp and the state directory as writable volumes
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/lib/foldflow"} <= mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in volumes[m["name"]] for m in container["volumeMounts"])


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = next(d for d in DOCS if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_probes_and_scraping_use_the_served_port(name: str) -> None:
    workload = DEPLOYMENTS[name]
    container = _container(workload)
    env = _env(container)
    [port] = container["ports"]
    served = env.get("FOLDFLOW_METRICS_PORT") or env["FOLDFLOW_GATEWAY_PORT"]
    assert str(port["containerPort"]) == served
    listens = env.get("FOLDFLOW_METRICS_HOST") if "FOLDFLOW_METRICS_PORT" in env \
        else env.get("FOLDFLOW_GATEWAY_HOST")  # fmt: skip
    assert listens == "0.0.0.0"  # the kubelet's probes and Prometheus come from outside
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == served
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"], probe
    expected = "/readyz" if name == "foldflow-gateway" else "/metrics"
    assert container["readinessProbe"]["httpGet"]["path"] == expected
    selector = workload["spec"]["selector"]["matchLabels"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert labels["foldflow.io/job"] == name  # the job name the alert rules expect


def test_the_orchestrator_may_recover_its_state_for_minutes_before_liveness_judges() -> None:
    container = _container(DEPLOYMENTS["foldflow-orchestrator"])
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] <= 120


def test_every_deployment_has_a_disruption_budget_that_selects_it() -> None:
    budgets = [d for d in DOCS if d["kind"] == "PodDisruptionBudget"]
    for name, workload in DEPLOYMENTS.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        [budget] = [b for b in budgets
                    if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert budget["spec"]["maxUnavailable"] == 1, name


def test_network_policies_deny_ingress_but_the_api_and_scraping() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in DOCS if d["kind"] == "NetworkPolicy"}
    deny = policies["foldflow-default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    api = policies["foldflow-gateway-api"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert api["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    [scrape] = policies["foldflow-metrics-scrape"]["ingress"]
    allowed = {p["port"] for p in scrape["ports"]}
    for workload in DEPLOYMENTS.values():
        assert _container(workload)["ports"][0]["containerPort"] in allowed


def test_the_prometheus_operator_overlay_scrapes_every_pod_under_the_alerts_job_names() -> None:
    kustomization, docs = _overlay("prometheus-operator")
    assert kustomization["resources"][0] == "../.."
    [monitor] = [d for d in docs if d["kind"] == "PodMonitor"]
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "foldflow"}
    jobs = {w["spec"]["template"]["metadata"]["labels"][spec["jobLabel"]]
            for w in DEPLOYMENTS.values()}
    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert jobs == {job["job_name"] for job in prometheus["scrape_configs"]}
    endpoints = {e["port"]: e["path"] for e in spec["podMetricsEndpoints"]}
    for workload in DEPLOYMENTS.values():
        [port] = _container(workload)["ports"]
        assert endpoints[port["name"]] == "/metrics"


def test_the_prometheus_rule_of_the_overlay_is_generated_from_the_rule_files() -> None:
    path = OVERLAYS / "prometheus-operator/build_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("build_prometheusrule", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    committed = (OVERLAYS / "prometheus-operator/prometheusrule.yaml").read_text()
    assert committed == module.render(), (
        "prometheusrule.yaml is stale: run .venv/bin/python "
        "deploy/k8s/overlays/prometheus-operator/build_prometheusrule.py")
    rule = yaml.safe_load(committed)
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"FoldflowServiceDown", "FoldflowWorkflowSuccessBudgetBurn"} <= alerts


def test_the_keda_overlay_scales_workers_on_the_lag_of_every_built_in_task_type() -> None:
    kustomization, docs = _overlay("keda")
    [scaled] = [d for d in docs if d["kind"] == "ScaledObject"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "foldflow-worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] <= int(CONFIG["FOLDFLOW_PARTITIONS"])
    topology = Topology.of(Settings(_env_file=None))  # type: ignore[call-arg]
    triggers = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"])
                for t in spec["triggers"] if t["type"] == "kafka"}
    assert triggers == {(topology.worker_group(t), topology.task(t))
                        for t in builtin_registry.types()}
    worker_env = _env(_container(DEPLOYMENTS["foldflow-worker"]))
    for trigger in spec["triggers"]:
        assert trigger["metadata"]["bootstrapServersFromEnv"] in worker_env
        assert int(trigger["metadata"]["lagThreshold"]) > 0
    [patch] = kustomization["patches"]
    assert patch["target"]["name"] == "foldflow-worker"
    assert yaml.safe_load(patch["patch"]) == [{"op": "remove", "path": "/spec/replicas"}]
