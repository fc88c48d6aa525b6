"""``foldflow run worker``: serve task types in the foreground (DESIGN §7, §12).

The built-in task types are always available; ``--module`` imports user modules so their
``@task`` registrations load. SIGTERM/SIGINT shut down gracefully: no new commands are
fetched, running attempts get ``--grace-period`` seconds, the rest is left uncommitted for
another worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading

import typer

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
        "-t",
        help="Task types to serve (comma-separated or repeated); default: every registered one.",
    ),
    module: list[str] = typer.Option(
        [], "--module", "-m", help="Import this module first (its @task handlers register)."
    ),
    concurrency: int = typer.Option(8, min=1, help="Handlers running at once, across types."),
    grace_period: float = typer.Option(
        15.0, min=0, help="Seconds in-flight attempts may finish after SIGTERM."
    ),
    session_timeout_ms: int = typer.Option(
        # librdkafka's 45 s default outlasts the default 30 s attempt timeout: a killed
        # worker's tasks would time out and be retried before they even moved.
        10_000,
        min=1,
        help="Consumer group session timeout (how soon a dead worker's "
        "partitions move to another).",
    ),
) -> None:
    """Run a worker in the foreground."""  # fmt: skip
    from confluent_kafka import KafkaException

    from foldflow.admin import PartitionMismatch, ensure_topics
    from foldflow.observability.logging import configure_logging
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from workers.builtin import registry as builtin_registry
    from workers.registry import default_registry
    from workers.runtime import Worker

    settings = get_settings()
    configure_logging(settings, service="worker")
    configure_tracing(settings, service="worker")
    sys.path.insert(0, os.getcwd())
    for name in module:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            typer.echo(f"cannot import task module {name!r}: {exc}", err=True)
            raise typer.Exit(2) from exc
    registry = builtin_registry.merged(default_registry)
    try:
        worker = Worker(
            settings,
            registry,
            task_types=_split(types) or None,
            concurrency=concurrency,
            grace_period=grace_period,
            consumer_config={"session.timeout.ms": session_timeout_ms},
        )
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    try:  # a user's task type needs its wf.tasks.<type> topic; idempotent
        ensure_topics(settings, task_types=worker.task_types)
    except (PartitionMismatch, KafkaException) as exc:
        log.warning("could not ensure the topics: %s", exc)
    if settings.metrics_port:
        start_metrics_server(settings.metrics_port)
    worker.run()
    stuck = [t for t in threading.enumerate() if t.name.startswith("task") and t.is_alive()]
    if stuck:
        # A sync handler past its timeout cannot be interrupted; its command is uncommitted
        # and will be redelivered, so leave without waiting for the thread.
        log.warning("exiting with %d sync handler(s) still running", len(stuck))
        logging.shutdown()
        os._exit(0)
