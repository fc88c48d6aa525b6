"""Foldflow over a secured Kafka: a SASL_SSL listener with SCRAM-SHA-512 and a CA made at
test time (secured_kafka.py). Every service of `foldflow up` runs a workflow end to end
through it; a wrong password fails `foldflow topics ensure` and `foldflow up` with a
message naming the setting, never the password."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from projection_support import scratch_database
from secured_kafka import PASSWORD, USER, SecuredBroker, secured_broker

from foldflow.bench.scaleout import UpDeployment
from foldflow.kafka import kafka_config
from foldflow.settings import Settings

pytestmark = pytest.mark.e2e

WRONG = "not-the-Pa55word"
FLOW = {
    "name": "secured-chain",
    "steps": [
        {"id": "a", "task": "builtin.echo", "input": {"n": "${input.n}"}},
        {"id": "b", "task": "builtin.echo", "after": ["a"], "input": {"done": True}},
    ],
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    with secured_broker(tmp_path_factory.mktemp("sasl-ssl-broker")) as running:
        yield running


def _deployment(broker: SecuredBroker, database: str, state: Path, *, password: str
                ) -> UpDeployment:  # fmt: skip
    return UpDeployment.create(
        kafka_bootstrap=broker.bootstrap, database_url=database, state_dir=state, gateways=1,
        extra={**broker.env(password=password), "FOLDFLOW_PARTITIONS": "3"},
    )  # fmt: skip


def test_the_broker_refuses_plaintext_clients(broker: SecuredBroker) -> None:
    """The listener really is secured: a client without the settings gets nothing."""
    from confluent_kafka.admin import AdminClient

    plain = Settings(_env_file=None, kafka_bootstrap=broker.bootstrap)  # type: ignore[call-arg]
    with pytest.raises(Exception, match=r"transport|[Tt]imed out"):
        AdminClient(kafka_config(plain)).list_topics(timeout=3)


def test_a_wrong_password_names_the_setting_and_never_prints_the_password(
    broker: SecuredBroker, stack: Settings, tmp_path: Path
) -> None:
    d = _deployment(broker, stack.database_url, tmp_path / "state", password=WRONG)
    began = time.monotonic()
    ensure = d.foldflow("topics", "ensure", timeout=120)
    took = time.monotonic() - began
    output = ensure.stdout + ensure.stderr
    assert ensure.returncode == 1, output
    assert "Kafka authentication failed" in output, output
    assert "FOLDFLOW_KAFKA_SASL_PASSWORD" in output and repr(USER) in output, output
    assert WRONG not in output and PASSWORD not in output

    up = d.foldflow("up", timeout=120)
    output = up.stdout + up.stderr
    assert up.returncode == 1, output
    assert "Kafka authentication failed" in output and "FOLDFLOW_KAFKA_SASL_PASSWORD" in output
    assert WRONG not in output
    assert not d.pids(), "no service may start when Kafka refuses the credentials"
    print(f"topics ensure failed in {took:.1f}s")


def test_a_workflow_runs_end_to_end_over_sasl_ssl(
    broker: SecuredBroker, stack: Settings, tmp_path: Path
) -> None:
    with scratch_database(stack.database_url) as database:
        d = _deployment(broker, database, tmp_path / "state", password=PASSWORD)
        try:
            began = time.monotonic()
            d.must("up", timeout=300)
            up_s = time.monotonic() - began
            flow = tmp_path / "flow.yaml"
            flow.write_text(yaml.safe_dump(FLOW))
            d.must("definitions", "register", str(flow))
            url = d.gateway_urls(1)[0]
            auth = {"Authorization": f"Bearer {d.api_key}"}
            with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
                deadline = time.monotonic() + 60
                while client.get(f"/v1/definitions/{FLOW['name']}").status_code != 200:
                    assert time.monotonic() < deadline, "the definition was never served"
                    time.sleep(0.3)
                started = client.post("/v1/workflows", json={
                    "definition": FLOW["name"], "input": {"n": 7}})  # fmt: skip
                assert started.status_code == 202, started.text
                workflow = started.json()["id"]
                status = None
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    status = client.get(f"/v1/workflows/{workflow}").json().get("status")
                    if status == "completed":
                        break
                    time.sleep(0.3)
                assert status == "completed", f"{status}\n{d.log_tails()}"
                ready = client.get("/readyz")
                assert ready.status_code == 200, ready.text  # its Kafka check over SASL_SSL
            status_out = d.must("status", workflow)
            assert "completed" in status_out, status_out
            print(f"up over SASL_SSL in {up_s:.1f}s; workflow done "
                  f"{time.monotonic() - began - up_s:.1f}s later")  # fmt: skip
        finally:
            down = d.foldflow("down", timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
