"""``foldflow run worker``: serve task types in the foreground.

The built-in task types are always available; ``--module`` imports user modules so their
``@task`` registrations load. SIGTERM/SIGINT shut down gracefully: no new commands are
fetched, running attempts get ``--grace-period`` (a duration), the rest is left uncommitted for
another worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading

import typer

from foldflow.cli.output import USAGE, duration_option
from foldflow.settings import get_settings

__all__ = ["run_worker"]

log = logging.getLogger("foldflow.worker")


def _split(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def run_worker(
    types: list[str] = typer.Option(
        [],
        "--types",
        "--task-type",
        help="Task types to serve (comma-separated or repeated); default: every registered one.",
    ),
    module: list[str] = typer.Option(
        [], "--module", "-m", help="Import this module first (its @task handlers register)."
    ),
    concurrency: int = typer.Option(8, min=1, help="Handlers running at once, across types."),
    grace_period: float = duration_option(
        15.0, "--grace-period", help="How long in-flight attempts may finish after SIGTERM."
    ),
    session_timeout: float | None = duration_option(
        None, "--session-timeout",
        help="Consumer group session timeout: how soon a dead worker's partitions move to "
        "another (default FOLDFLOW_WORKER_SESSION_TIMEOUT_MS, 6s).",
    ),
    session_timeout_ms: int | None = typer.Option(
        None, "--session-timeout-ms", min=1_000, hidden=True,
        help="The same in milliseconds (kept for older scripts).",
    ),
) -> None:
    """Run a worker in the foreground."""  # fmt: skip
    from confluent_kafka import KafkaException

    from foldflow.admin import PartitionMismatch, ensure_topics
    from foldflow.observability.logging import configure_logging
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from foldflow.workers.builtin import builtin_registry
    from foldflow.workers.builtin_http import HttpOptions
    from foldflow.workers.registry import default_registry
    from foldflow.workers.runtime import Worker

    settings = get_settings()
    configure_logging(settings, service="worker")
    configure_tracing(settings, service="worker")
    sys.path.insert(0, os.getcwd())
    for name in module:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            typer.echo(f"cannot import task module {name!r}: {exc}", err=True)
            raise typer.Exit(USAGE) from exc
    try:
        http = HttpOptions.from_settings(settings)
    except ValueError as exc:
        typer.echo(f"FOLDFLOW_HTTP_ALLOW: {exc}", err=True)
        raise typer.Exit(USAGE) from exc
    registry = builtin_registry(http=http).merged(default_registry)
    if session_timeout_ms is None and session_timeout is not None:
        session_timeout_ms = max(1_000, round(session_timeout * 1000))
    try:
        worker = Worker(
            settings,
            registry,
            task_types=_split(types) or None,
            concurrency=concurrency,
            grace_period=grace_period,
            consumer_config=(
                {} if session_timeout_ms is None else {
                    "session.timeout.ms": session_timeout_ms,
                    "heartbeat.interval.ms": max(500, session_timeout_ms // 4),
                }
            ),
        )
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(USAGE) from exc
    try:  # a user's task type needs its wf.tasks.<type> topic; idempotent
        ensure_topics(settings, task_types=worker.task_types)
    except (PartitionMismatch, KafkaException) as exc:
        log.warning("could not ensure the topics: %s", exc)
    if settings.metrics_port:
        start_metrics_server(settings.metrics_port, addr=settings.metrics_host)
    worker.run()
    stuck = [t for t in threading.enumerate() if t.name.startswith("task") and t.is_alive()]
    if stuck:
        # A sync handler past its timeout cannot be interrupted; its command is uncommitted
        # and will be redelivered, so leave without waiting for the thread.
        log.warning("exiting with %d sync handler(s) still running", len(stuck))
        logging.shutdown()
        os._exit(0)
