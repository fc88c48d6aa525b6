"""deploy/k8s: every manifest is listed, every container runs a real `foldflow` command
with valid settings, and the probes and scrape annotations point at the ports it serves."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from foldflow.cli.introspect import resolve
from foldflow.settings import Settings

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS: list[dict[str, Any]] = [
    doc
    for name in KUSTOMIZATION["resources"]
    for doc in yaml.safe_load_all((K8S / name).read_text())
]
CONFIG = next(d for d in DOCS if d["kind"] == "ConfigMap")["data"]
WORKLOADS = {d["metadata"]["name"]: d for d in DOCS if d["kind"] in ("Deployment", "Job")}


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
    env["FOLDFLOW_DATABASE_URL"] = "postgresql+psycopg://u:p@db:5432/foldflow"  # the secret
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_every_manifest_file_is_in_the_kustomization() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == set(KUSTOMIZATION["resources"])
    assert {"foldflow-init", "foldflow-orchestrator", "foldflow-worker", "foldflow-projector",
            "foldflow-gateway"} == set(WORKLOADS)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_containers_run_real_commands_with_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _container(WORKLOADS[name])
    for argv in _argvs(container):
        assert resolve(argv) is not None, f"{name}: `foldflow {' '.join(argv)}` does not exist"
    env = _env(container)
    fields = {f"FOLDFLOW_{f.upper()}" for f in Settings.model_fields}
    names = set(env) | {e["name"] for e in container.get("env", [])}
    assert names - fields == set()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"foldflow-config", "foldflow-database"}


@pytest.mark.parametrize("name", sorted(n for n in WORKLOADS if n != "foldflow-init"))
def test_probes_and_scraping_use_the_served_port(name: str) -> None:
    workload = WORKLOADS[name]
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
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    expected = "/readyz" if name == "foldflow-gateway" else "/metrics"
    assert container["readinessProbe"]["httpGet"]["path"] == expected
    selector = workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
