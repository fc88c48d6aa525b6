"""docker-compose.kafka.yml and deploy/Dockerfile: parsed and checked against the code.

Docker does not run on these machines, so the file is validated statically: every
container runs a real `foldflow` command, every FOLDFLOW_* variable is a setting with a
valid value, ports agree with the settings, the Prometheus targets and the published ports.
"""

from __future__ import annotations

import ast
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from foldflow.cli.introspect import resolve
from foldflow.settings import Settings

REPO = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
FOLDFLOW = {name: s for name, s in SERVICES.items() if s.get("image") == "foldflow:local"}


def _commands(service: dict[str, Any]) -> list[list[str]]:
    """The foldflow argument lists a container runs (after the `foldflow` entrypoint)."""
    command = service["command"]
    if service.get("entrypoint") == ["sh", "-c"]:
        [script] = command
        argvs = [shlex.split(part) for part in script.split("&&")]
        assert all(argv[0] == "foldflow" for argv in argvs), script
        return [argv[1:] for argv in argvs]
    return [list(command)]


def _settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in service.get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_system_is_all_there() -> None:
    assert {"kafka", "postgres", "init", "orchestrator", "worker", "projector", "gateway",
            "prometheus", "grafana"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert SERVICES["postgres"]["image"] == "postgres:15"
    kafka_env = SERVICES["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any(key.startswith("KAFKA_ZOOKEEPER") for key in kafka_env)


@pytest.mark.parametrize("name", sorted(FOLDFLOW))
def test_every_container_runs_a_real_foldflow_command(name: str) -> None:
    for argv in _commands(FOLDFLOW[name]):
        assert resolve(argv) is not None, f"{name}: `foldflow {' '.join(argv)}` does not exist"


def test_init_ensures_topics_then_migrates_and_services_wait_for_it() -> None:
    assert _commands(SERVICES["init"]) == [["topics", "ensure"], ["db", "upgrade"]]
    assert SERVICES["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert SERVICES["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("orchestrator", "worker", "projector", "gateway"):
        assert FOLDFLOW[name]["command"][:2] == ["run", name]
        assert FOLDFLOW[name]["depends_on"]["init"]["condition"] == (
            "service_completed_successfully")


@pytest.mark.parametrize("name", sorted(FOLDFLOW))
def test_environment_is_made_of_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = FOLDFLOW[name].get("environment", {})
    fields = {f"FOLDFLOW_{field.upper()}" for field in Settings.model_fields}
    assert set(env) - fields == set(), "unknown FOLDFLOW_* variables"
    settings = _settings(FOLDFLOW[name], monkeypatch)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert "@postgres:5432/" in settings.database_url


def test_ports_agree_with_settings_and_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    expected = {
        "orchestrator": defaults.orchestrator_metrics_port,
        "worker": defaults.worker_metrics_port,
        "projector": defaults.projector_metrics_port,
    }
    for name, port in expected.items():
        with monkeypatch.context() as m:
            served = _settings(FOLDFLOW[name], m)
        # Prometheus scrapes from another container: /metrics must not stay on loopback.
        assert (served.metrics_port, served.metrics_host) == (port, "0.0.0.0")
        assert str(port) in FOLDFLOW[name]["expose"]
    with monkeypatch.context() as m:
        gateway = _settings(FOLDFLOW["gateway"], m)
    assert gateway.gateway_host == "0.0.0.0"
    assert f"{gateway.gateway_port}:{gateway.gateway_port}" in FOLDFLOW["gateway"]["ports"]

    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {
        "orchestrator:9101", "worker:9102", "projector:9103", f"gateway:{gateway.gateway_port}"
    }


def test_mounted_paths_exist_in_the_repository() -> None:
    for name in ("prometheus", "grafana"):
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            assert (REPO / source).is_dir(), volume
    assert (REPO / SERVICES["init"]["build"]["dockerfile"]).is_file()


def test_dockerfile_installs_every_package_with_the_constraints() -> None:
    text = (REPO / "deploy/Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert "FOLDFLOW_METRICS_HOST=0.0.0.0" in lines  # in a container, Prometheus is outside
    assert 'ENTRYPOINT ["foldflow"]' in lines
    assert "-c constraints.txt" in text
    wheel = _setup_py_constants()
    for package in wheel["PACKAGES"]:
        assert f"COPY {package} ./{package}" in lines, f"{package} is not copied into the image"
    for folder in wheel["SHIPPED_FOLDERS"].values():
        assert f"COPY {folder} ./{folder}" in lines, f"{folder} is not copied into the image"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert '["optional-dependencies"]["server"]' in text  # the server extras' libraries too
    assert "server" in pyproject["project"]["optional-dependencies"]


def _setup_py_constants() -> dict[str, Any]:
    """The literal constants of setup.py (which packages and folders the wheel holds)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name) and target.id.isupper()
    }
