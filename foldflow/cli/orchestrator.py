"""``foldflow run orchestrator``: the faust orchestrator in the foreground (DESIGN §5, §12).

Creates the topics it needs (idempotent), serves ``/metrics`` when
``FOLDFLOW_METRICS_PORT`` is set (from the moment its state is recovered, so an answering
``/metrics`` means ready), and runs the faust worker until SIGTERM/SIGINT, on
which faust stops the agent, flushes the changelog, commits and leaves the group.
"""

from __future__ import annotations

import logging
import sys

import typer

from foldflow.settings import Settings, get_settings

__all__ = ["EOS_REFUSAL", "STORE_REFUSAL", "run_orchestrator"]

#: Why a store other than memory:// is refused (docs/internals.md).
STORE_REFUSAL = (
    "orchestrator_store: only memory:// is supported for now. With rocksdb:// (rocksdict) "
    "the orchestrator's integration test left workflows stuck (faust's rocksdb store "
    "resolves partitions through the current event, which batched handling has to "
    "juggle); the state is rebuilt from the changelog on start either way."
)

#: Why FOLDFLOW_PROCESSING_GUARANTEE=exactly_once is refused (docs/internals.md).
EOS_REFUSAL = (
    "processing_guarantee=exactly_once is refused: with faust-streaming 0.15.3 the "
    "orchestrator's crash test fails in that mode (after a SIGKILL failover the survivor "
    "crashes with ProducerFenced / IllegalOperation, DESIGN §13). at_least_once is safe: "
    "events are deterministic and state is stored only after the broker acked them."
)

log = logging.getLogger("foldflow.orchestrator")


def run_orchestrator() -> None:
    """Run the orchestrator (the faust app) in the foreground."""
    import faust
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from foldflow.admin import PartitionMismatch, ensure_topics
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from foldflow.topics import Topology
    from processors.app import create_app

    settings = get_settings()
    if settings.processing_guarantee == "exactly_once":
        typer.echo(EOS_REFUSAL, err=True)
        raise typer.Exit(2)
    if not settings.orchestrator_store.startswith("memory:"):
        typer.echo(STORE_REFUSAL, err=True)
        raise typer.Exit(2)
    _configure_logging(settings)
    configure_tracing(settings, service="orchestrator")
    try:
        admin = AdminClient({
            "bootstrap.servers": settings.kafka_bootstrap,
            "log_level": 3,  # errors only: librdkafka writes its log lines to stderr
        })  # fmt: skip
        outcomes = ensure_topics(settings, admin=admin)
    except (PartitionMismatch, KafkaException) as exc:
        typer.echo(f"cannot prepare the topics: {exc}", err=True)
        raise typer.Exit(2) from exc
    if settings.replication_factor is None:
        # faust creates its changelog itself, with a number, not the cluster's default:
        # give it the replicas wf.events got, so it survives a broker as they do.
        events = Topology.of(settings).events
        replicas = next(o.replication_factor for o in outcomes if o.name == events)
        settings = settings.model_copy(update={"replication_factor": replicas})

    def serve_metrics() -> None:  # once recovered: /metrics answering means ready
        if settings.metrics_port:
            port = start_metrics_server(settings.metrics_port)
            log.info("serving /metrics on port %d", port)

    app = create_app(settings, on_ready=serve_metrics)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.spinner = None  # its terminal escapes would break the one-JSON-object-per-line log
    worker.execute_from_commandline()


def _configure_logging(settings: Settings) -> None:
    try:
        from foldflow.observability.logging import configure_logging
    except ImportError:  # the observability package ships it; keep running without it
        logging.basicConfig(level=settings.log_level, stream=sys.stdout)
        return
    configure_logging(settings, service="orchestrator")
