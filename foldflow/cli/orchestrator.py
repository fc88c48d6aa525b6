"""``foldflow run orchestrator``: the transactional orchestrator in the foreground.

Creates the topics it needs (idempotent), serves ``/metrics`` when
``FOLDFLOW_METRICS_PORT`` is set (from the moment its first assignment is recovered, so
an answering ``/metrics`` means ready), and runs the loop until SIGTERM/SIGINT, on which
it commits the open transaction, leaves the group and exits 0 (
docs/internals.md "Orchestrator").
"""

from __future__ import annotations

import gc
import logging
import sys

import typer

from foldflow.kafka import connection_failure, kafka_config
from foldflow.settings import Settings, get_settings

__all__ = ["run_orchestrator"]

log = logging.getLogger("foldflow.orchestrator")


def run_orchestrator() -> None:
    """Run the orchestrator in the foreground; exit with its exit code."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from foldflow.admin import PartitionMismatch, ensure_topics_at_start
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from foldflow.processors.runtime.bootstrap import run_orchestrator as run

    settings = get_settings()
    _configure_logging(settings)
    configure_tracing(settings, service="orchestrator")
    try:
        admin = AdminClient(kafka_config(settings, {
            "log_level": 3,  # errors only: librdkafka writes its log lines to stderr
        }))  # fmt: skip
        ensure_topics_at_start(settings, admin=admin)
    except (PartitionMismatch, KafkaException) as exc:
        typer.echo(f"cannot prepare the topics: {connection_failure() or exc}", err=True)
        raise typer.Exit(2) from exc

    serving: list[int] = []

    def serve_metrics() -> None:  # once recovered: /metrics answering means ready
        if settings.metrics_port and not serving:
            serving.append(start_metrics_server(settings.metrics_port, addr=settings.metrics_host))
            log.info("serving /metrics on port %d", serving[0])

    # What the imports and the setup made lives as long as the process: out of the garbage
    # collector's sight, its full collections walk only what the loop made since (they
    # were ~20 ms each, every few seconds under load, and every input waited them out).
    gc.freeze()
    code = run(settings, on_ready=serve_metrics)
    logging.shutdown()
    sys.exit(code)


def _configure_logging(settings: Settings) -> None:
    try:
        from foldflow.observability.logging import configure_logging
    except ImportError:  # the observability package ships it; keep running without it
        logging.basicConfig(level=settings.log_level, stream=sys.stdout)
        return
    configure_logging(settings, service="orchestrator")
