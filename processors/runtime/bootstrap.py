"""The orchestrator's composition root: real clients in, the loop run, the exit code out.

:func:`build` wires an :class:`~foldflow.processors.runtime.loop.Orchestrator` from settings (Kafka
clients, the state reader, the definitions cache, the task-topic creator).
:func:`run_orchestrator` runs it until SIGTERM/SIGINT (exit 0 after the last commit).

When the producer is fenced, the loop is over: nothing it holds can be trusted. By
default a fresh loop (new clients, every state read back from the state topic, as a
restarted process would) takes over within the same process, at most
``orchestrator_restarts_on_fence`` times per 10 minutes, so a broker restart that outlived
an open transaction does not need a supervisor; with 0 the process exits with
:data:`EXIT_FENCED` and a supervisor restarts it. Any other fatal error exits with
:data:`EXIT_FATAL`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from foldflow.admin import ensure_topics
from foldflow.kafka import kafka_config
from foldflow.processors.runtime.definitions_cache import DefinitionsCache
from foldflow.processors.runtime.errors import FatalError, Fenced
from foldflow.processors.runtime.kafka import transactional_id
from foldflow.processors.runtime.loop import Orchestrator
from foldflow.processors.runtime.records import DefinitionTable
from foldflow.processors.runtime.recovery import StateReader
from foldflow.processors.runtime.watchdog import Watchdog
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["EXIT_FATAL", "EXIT_FENCED", "build", "run_orchestrator"]

EXIT_FATAL = 1
EXIT_FENCED = 3
RESTART_WINDOW_S = 600.0

log = logging.getLogger("foldflow.orchestrator")


def build(
    settings: Settings, *, watchdog: Watchdog, on_ready: Callable[[], None] | None = None
) -> Orchestrator:
    """A ready-to-run orchestrator with real Kafka clients."""
    table = DefinitionTable()
    admin = AdminClient(kafka_config(settings, {
        "log_level": 3,  # errors only: librdkafka writes its log lines to stderr
    }))  # fmt: skip

    def ensure_task_topics(task_types: tuple[str, ...]) -> None:
        ensure_topics(settings, task_types=task_types, admin=admin)

    return Orchestrator(
        settings,
        consumer_factory=Consumer,
        producer_factory=Producer,
        reader=StateReader(settings, Topology.of(settings).orchestrator_state, definitions=table),
        definitions=DefinitionsCache(settings),
        table=table,
        ensure_task_topics=ensure_task_topics,
        watchdog=watchdog,
        on_ready=on_ready,
    )


def run_orchestrator(settings: Settings, *, on_ready: Callable[[], None] | None = None) -> int:
    """Run the orchestrator until SIGTERM/SIGINT; return the process exit code."""
    stopping = threading.Event()
    current: list[Orchestrator] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stopping.set()
        for orchestrator in current:
            orchestrator.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watchdog = Watchdog(signal_grace_s=max(20.0, 2 * settings.orchestrator_session_timeout_s))
    fences: deque[float] = deque()
    try:
        while not stopping.is_set():
            orchestrator = build(settings, watchdog=watchdog, on_ready=on_ready)
            current[:] = [orchestrator]
            try:
                orchestrator.run()
                return 0
            except (Fenced, FatalError) as exc:
                # A fatal producer error (e.g. INVALID_TXN_STATE after the transaction
                # coordinator died mid-commit) leaves that producer useless, not the process:
                # a new one with the same transactional.id aborts whatever was open, and
                # every state is read back, exactly as after a restart of the process.
                what = "fenced" if isinstance(exc, Fenced) else "fatal"
                now = time.monotonic()
                while fences and fences[0] < now - RESTART_WINDOW_S:
                    fences.popleft()
                if len(fences) >= settings.orchestrator_restarts_on_fence:
                    log.critical("%s (%s): the producer %s can do nothing more; exiting",
                                 what, exc, transactional_id(settings))  # fmt: skip
                    return EXIT_FENCED if isinstance(exc, Fenced) else EXIT_FATAL
                fences.append(now)
                log.error("%s (%s): starting afresh, every state read back from the state "
                          "topic (%d of %d fresh starts in 10 minutes)", what, exc, len(fences),
                          settings.orchestrator_restarts_on_fence)  # fmt: skip
            except Exception:  # a bug, or a restore that could not finish: say so, exit
                log.critical("the loop failed; exiting", exc_info=True)
                return EXIT_FATAL
        return 0
    finally:
        watchdog.close()
