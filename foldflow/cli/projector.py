"""``foldflow run projector``: the projector in the foreground (DESIGN §8, §12).

The composition root of the projector process: settings, JSON logs, tracing, metrics
server, engine, DLQ publisher, then :class:`projections.projector.Projector`. SIGTERM and
SIGINT finish the batch in hand and exit.
"""

from __future__ import annotations

import signal
from types import FrameType

from foldflow.settings import get_settings

__all__ = ["run_projector"]


def run_projector() -> None:
    """Fold wf.events and wf.definitions into PostgreSQL until stopped."""
    from confluent_kafka import Message

    from foldflow.observability.logging import configure_logging
    from foldflow.observability.metrics import start_metrics_server
    from foldflow.observability.tracing import configure_tracing
    from producers import Publisher
    from projections.db import make_engine
    from projections.projector import Projector

    settings = get_settings()
    configure_logging(settings, service="projector")
    configure_tracing(settings, service="projector")
    engine = make_engine(settings.database_url)
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
        start_metrics_server(settings.metrics_port)
    try:
        projector.run()
    finally:
        publisher.close()
        engine.dispose()
