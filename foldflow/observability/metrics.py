"""Every Prometheus metric of Foldflow, declared once so all services share the names.

Services import the metric objects from here and never declare their own: a name is a
contract with the Grafana dashboards, recording and alert rules in ``deploy/``. Names
follow Prometheus naming: a ``foldflow_`` prefix, the unit as a plural suffix
(``_seconds``, ``_messages``, ``_events``) and ``_total`` on counters. All live in the
default registry, which :func:`start_metrics_server` and :func:`render_metrics` expose.
"""

from __future__ import annotations

import functools
import os
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

__all__ = [
    "ACTIVE_WORKFLOWS",
    "CIRCUIT_BREAKER_STATE",
    "CONSUMER_LAG",
    "CONTENT_TYPE_LATEST",
    "DLQ_MESSAGES",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "INPUTS_IGNORED",
    "MESSAGES_HANDLED",
    "MESSAGE_HANDLING_SECONDS",
    "PROJECTION_BATCH_SECONDS",
    "PROJECTION_BATCH_SIZE",
    "PROJECTION_EVENTS_APPLIED",
    "PROJECTION_GAPS",
    "PROJECTION_LAG_SECONDS",
    "PROJECTION_PARTITION_LAG_SECONDS",
    "STEP_ATTEMPTS",
    "STEP_DURATION_SECONDS",
    "TRANSACTION_ABORTS",
    "TRANSACTION_COMMITS",
    "TRANSACTION_COMMIT_SECONDS",
    "TRANSACTION_INPUTS",
    "TRANSACTION_SECONDS",
    "WORKFLOWS_FINISHED",
    "WORKFLOWS_STARTED",
    "WORKFLOW_OUTCOMES",
    "child",
    "render_metrics",
    "start_metrics_server",
]

_M = TypeVar("_M", Counter, Gauge, Histogram)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# --- HTTP RED (gateway) -------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "foldflow_http_requests_total", "HTTP requests by route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "foldflow_http_request_duration_seconds", "HTTP request latency by route template.",
    ["method", "route"], buckets=_FAST,
)

# --- message handling RED (every consumer) ------------------------------------------------
MESSAGES_HANDLED = Counter(
    "foldflow_messages_handled_total",
    "Kafka messages handled; outcome is ok, error, skipped or dlq.",
    ["topic", "handler", "outcome"],
)
MESSAGE_HANDLING_SECONDS = Histogram(
    "foldflow_message_handling_seconds", "Time to handle one Kafka message.",
    ["topic", "handler"], buckets=_FAST,
)


# --- workflows and steps (orchestrator, workers) ------------------------------------------
WORKFLOWS_STARTED = Counter(
    "foldflow_workflows_started_total", "Workflows started, by definition name.", ["definition"]
)
WORKFLOWS_FINISHED = Counter(
    "foldflow_workflows_finished_total",
    "Workflows that reached a terminal status (completed, failed, compensated, ...).",
    ["definition", "status"],
)
WORKFLOW_OUTCOMES = Counter(
    "foldflow_workflow_outcomes_total",
    "Workflows ended, counted once each by the projector, by definition, terminal status and "
    "cause (none, requested, business, invalid, child: not Foldflow's fault; timeout, error, "
    "deadline: against the end-to-end success objective; docs/slo.md).",
    ["definition", "status", "cause"],
)
ACTIVE_WORKFLOWS = Gauge(
    "foldflow_active_workflows", "Workflows not yet terminal, on this instance's partitions."
)
STEP_DURATION_SECONDS = Histogram(
    "foldflow_step_duration_seconds", "Duration of one task attempt, by task type.",
    ["task_type"], buckets=_SLOW,
)
STEP_ATTEMPTS = Counter(
    "foldflow_step_attempts_total", "Task attempts by task type and outcome.",
    ["task_type", "outcome"],
)
INPUTS_IGNORED = Counter(
    "foldflow_inputs_ignored_total",
    "Orchestrator inputs that produced no events (duplicate, stale attempt, stale timer, ...).",
    ["reason"],
)

# --- Kafka transactions (orchestrator) ----------------------------------------------------
TRANSACTION_COMMITS = Counter(
    "foldflow_transaction_commits_total", "Kafka transactions committed by the orchestrator."
)
TRANSACTION_ABORTS = Counter(
    "foldflow_transaction_aborts_total",
    "Kafka transactions aborted (their inputs are re-read and decided again), by reason.",
    ["reason"],
)
TRANSACTION_SECONDS = Histogram(
    "foldflow_transaction_duration_seconds",
    "A committed transaction's time from its first record to the broker's commit.",
    buckets=_FAST,
)
TRANSACTION_COMMIT_SECONDS = Histogram(
    "foldflow_transaction_commit_seconds",
    "The broker's part of a committed transaction: send_offsets_to_transaction and "
    "commit_transaction, from the first call to the last return.",
    buckets=_FAST,
)
TRANSACTION_INPUTS = Histogram(
    "foldflow_transaction_inputs", "Inputs (commands, results) per committed transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)

# --- Kafka consumers ----------------------------------------------------------------------
CONSUMER_LAG = Gauge(
    "foldflow_consumer_lag_messages",
    "Messages between a group's position and the log end (transaction markers take offsets "
    "too, so this is an upper bound of the records still to read).",
    ["group", "topic", "partition"],
)
DLQ_MESSAGES = Counter(
    "foldflow_dlq_messages_total", "Records sent to wf.dlq, by topic of origin and reason kind.",
    ["topic", "reason_kind"],
)

# --- projections --------------------------------------------------------------------------
PROJECTION_LAG_SECONDS = Histogram(
    "foldflow_projection_lag_seconds", "Event timestamp to applied in PostgreSQL.",
    buckets=(*_FAST, 30.0, 60.0, 300.0),
)
PROJECTION_PARTITION_LAG_SECONDS = Gauge(
    "foldflow_projection_partition_lag_seconds",
    "Age of the last event applied per partition of wf.events.",
    ["partition"],
)
PROJECTION_EVENTS_APPLIED = Counter(
    "foldflow_projection_events_applied_total", "Events applied to the projections."
)
PROJECTION_BATCH_SIZE = Histogram(
    "foldflow_projection_batch_size_events", "Events per projector transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
PROJECTION_BATCH_SECONDS = Histogram(
    "foldflow_projection_batch_seconds", "Duration of one projector transaction.",
    buckets=_FAST,
)
PROJECTION_GAPS = Counter(
    "foldflow_projection_gaps_total", "Sequence gaps met by the projector (batch retried)."
)

# --- resilience ---------------------------------------------------------------------------
CIRCUIT_BREAKER_STATE = Gauge(
    "foldflow_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ["name"],
)


@functools.cache
def child(metric: _M, *values: str) -> _M:
    """``metric.labels(*values)``, looked up once: ``labels()`` validates and takes a lock on
    every call, and the orchestrator and workers count every message. For the metrics whose
    label sets are never removed (not :data:`CONSUMER_LAG`)."""
    return metric.labels(*values)


def start_metrics_server(port: int, *, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` of the default registry on a background thread; return the port.

    ``port=0`` binds a free port (tests, several processes on one machine). ``addr`` is
    the ``metrics_host`` setting: loopback unless a container publishes the port to
    Prometheus (``/metrics`` has no authentication).
    """
    server, _thread = start_http_server(port, addr=addr)
    return int(server.server_port)


def render_metrics(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition body and its content type, for a framework's own ``/metrics`` route.

    In a process of several serving one port (``PROMETHEUS_MULTIPROC_DIR`` set, as
    ``foldflow run gateway --workers N`` does), the default registry's answer is the sum
    over every process, whichever one serves the scrape.
    """
    if registry is REGISTRY and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
