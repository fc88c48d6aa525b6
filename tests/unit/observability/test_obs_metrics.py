"""The shared metric catalog: names of DESIGN §10, exposed over HTTP and as text."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from foldflow.observability import metrics
from foldflow.observability.metrics import render_metrics, start_metrics_server
from foldflow.settings import Settings

EXPECTED = {
    "foldflow_http_requests": {"method", "route", "status"},
    "foldflow_http_request_duration_seconds": {"method", "route"},
    "foldflow_messages_handled": {"topic", "handler", "outcome"},
    "foldflow_message_handling_seconds": {"topic", "handler"},
    "foldflow_workflows_started": {"definition"},
    "foldflow_workflows_finished": {"definition", "status"},
    "foldflow_workflow_outcomes": {"definition", "status", "cause"},
    "foldflow_active_workflows": set(),
    "foldflow_step_duration_seconds": {"task_type"},
    "foldflow_step_attempts": {"task_type", "outcome"},
    "foldflow_consumer_lag_messages": {"group", "topic", "partition"},
    "foldflow_projection_lag_seconds": set(),
    "foldflow_projection_partition_lag_seconds": {"partition"},
    "foldflow_projection_events_applied": set(),
    "foldflow_projection_batch_size_events": set(),
    "foldflow_projection_batch_seconds": set(),
    "foldflow_projection_gaps": set(),
    "foldflow_dlq_messages": {"topic", "reason_kind"},
    "foldflow_circuit_breaker_state": {"name"},
    "foldflow_inputs_ignored": {"reason"},
    "foldflow_transaction_commits": set(),
    "foldflow_transaction_aborts": {"reason"},
    "foldflow_transaction_duration_seconds": set(),
    "foldflow_transaction_commit_seconds": set(),
    "foldflow_transaction_inputs": set(),
}


def test_every_design_metric_is_declared_once_with_its_labels() -> None:
    declared = {
        m._name: set(m._labelnames)
        for name in metrics.__all__
        if hasattr(m := getattr(metrics, name), "_labelnames")
    }
    assert declared == EXPECTED


def test_render_and_http_server_expose_samples() -> None:
    metrics.WORKFLOWS_STARTED.labels(definition="render-test").inc()
    body, content_type = render_metrics()
    port = start_metrics_server(0, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        served = response.read().decode()

    assert content_type.startswith("text/plain")
    for text in (body.decode(), served):
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = [s for s in families["foldflow_workflows_started"].samples if s.labels]
        assert any(s.labels == {"definition": "render-test"} and s.value >= 1 for s in samples)
    assert REGISTRY.get_sample_value(
        "foldflow_workflows_started_total", {"definition": "render-test"}
    ) == 1.0


def test_a_cached_child_counts_into_the_labelled_series() -> None:
    handled = metrics.child(metrics.MESSAGES_HANDLED, "child-test", "h", "ok")
    assert metrics.child(metrics.MESSAGES_HANDLED, "child-test", "h", "ok") is handled
    assert metrics.child(metrics.MESSAGES_HANDLED, "child-test", "h", "dlq") is not handled
    handled.inc()
    metrics.child(metrics.MESSAGE_HANDLING_SECONDS, "child-test", "h").observe(0.002)
    labels = {"topic": "child-test", "handler": "h"}
    assert REGISTRY.get_sample_value(
        "foldflow_messages_handled_total", {**labels, "outcome": "ok"}
    ) == 1.0
    assert REGISTRY.get_sample_value("foldflow_message_handling_seconds_count", labels) == 1.0


def _outward_address() -> str | None:
    """An address of this machine that is not loopback (None: it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    assert Settings(_env_file=None).metrics_host == "127.0.0.1"  # type: ignore[call-arg]
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address but loopback")
    private = start_metrics_server(0)
    assert _answers("127.0.0.1", private) and not _answers(outward, private)
    published = start_metrics_server(0, addr="0.0.0.0")
    assert _answers(outward, published)
