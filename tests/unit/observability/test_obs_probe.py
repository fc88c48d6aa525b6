"""The container health probe asks the service the container runs."""

from __future__ import annotations

import socket

import pytest

from foldflow.observability import probe
from foldflow.observability.metrics import start_metrics_server
from foldflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_service_with_a_metrics_port_is_asked_there_the_gateway_on_healthz() -> None:
    worker = Settings(_env_file=None, metrics_port=9102)  # type: ignore[call-arg]
    gateway = Settings(_env_file=None, gateway_port=8080)  # type: ignore[call-arg]
    assert probe.probe_url(worker) == "http://127.0.0.1:9102/metrics"
    assert probe.probe_url(gateway) == "http://127.0.0.1:8080/healthz"


def test_healthy_while_the_service_answers_unhealthy_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = start_metrics_server(0, addr="127.0.0.1")
    monkeypatch.setenv("FOLDFLOW_METRICS_PORT", str(port))
    assert probe.main() == 0

    closed = _free_port()
    monkeypatch.setenv("FOLDFLOW_METRICS_PORT", str(closed))
    assert probe.main(timeout=1.0) == 1
    assert f"http://127.0.0.1:{closed}/metrics" in capsys.readouterr().err
