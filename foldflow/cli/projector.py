"""``foldflow run projector``: the projector in the foreground.

The composition root of the projector process: settings, JSON logs, tracing, metrics
server, engine, DLQ publisher, then :class:`foldflow.projections.projector.Projector`. SIGTERM and
SIGINT finish the batch in hand and exit.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

import typer

from foldflow.settings import get_settings

__all__ = ["run_projector"]


def run_projector() -> None:
    """Fold wf.events and wf.definitions into PostgreSQL until stopped."""
    from confluent_kafka import KafkaException, Message
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

    from foldflow.admin import PartitionMismatch, ensure_topics_at_start
    from foldflow.observability.logging import configure_logging
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from foldflow.producers import Publisher
    from foldflow.projections.db import make_engine
    from foldflow.projections.projector import Projector

    settings = get_settings()
    # Before any thread starts: Linux gives each thread its own priority, a new one its
    # creator's.
    niceness = os.nice(settings.projector_nice)
    configure_logging(settings, service="projector")
    logging.getLogger("foldflow.projector").info("CPU priority", extra={"nice": niceness})
    configure_tracing(settings, service="projector")
    try:
        ensure_topics_at_start(settings, task_types=())
    except (PartitionMismatch, KafkaException) as exc:
        typer.echo(f"cannot prepare the topics: {exc}", err=True)
        raise typer.Exit(2) from exc
    engine = make_engine(settings)
    try:
        for attempt in Retrying(retry=retry_if_exception_type(OperationalError),
                                wait=wait_exponential(multiplier=0.2, max=5),
                                stop=stop_after_delay(60), reraise=True):
            with attempt, engine.connect() as conn:
                migrated = conn.execute(text("SELECT to_regclass('projection_offsets')")).scalar()
    except OperationalError as exc:
        typer.echo(f"PostgreSQL unreachable for 60 s: {exc.orig}", err=True)
        raise typer.Exit(1) from exc
    if migrated is None:
        typer.echo("the projection tables are missing: run `foldflow db upgrade`", err=True)
        raise typer.Exit(2)
    publisher = Publisher(settings, source="projector")

    def dlq(msg: Message, error: BaseException) -> None:
        publisher.send_to_dlq(
            msg.topic() or "", msg.key(), msg.value(), msg.headers(), error,
            partition=msg.partition() or 0, offset=msg.offset() or 0,
        )

    projector = Projector(settings, engine, dlq)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        projector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.metrics_port:
        start_metrics_server(settings.metrics_port, addr=settings.metrics_host)
    try:
        projector.run()
    finally:
        publisher.close()
        engine.dispose()
