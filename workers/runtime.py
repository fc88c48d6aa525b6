"""The worker runtime: Kafka consumer groups that run task handlers.

One confluent-kafka consumer per served task type (topic ``wf.tasks.<type>``, group
``wf.worker.<type>``), all driven by one asyncio loop:

- at most ``concurrency`` handlers run at once across all types (async handlers on the
  loop, sync ones in a thread pool of that size); a result waiting for its ack frees its
  handler slot (up to 4 * ``concurrency`` records in hand in all); when full, the
  consumers wait up to a second for a slot, then pause their partitions and keep
  polling, so the group keeps them;
- each attempt is bounded by ``ExecuteTask.timeout_ms``;
- the result (``task.succeeded.v1`` / ``task.failed.v1``) is published to ``wf.results``
  and acked **before** the command's offset is committed, and commits move in order per
  partition (never past a message still running): at-least-once, nothing lost;
- undecodable commands and unknown task types go to ``wf.dlq`` with a reason, are
  committed, and the worker goes on;
- :meth:`Worker.stop` (SIGTERM/SIGINT under :meth:`Worker.run`) stops fetching, lets
  in-flight attempts finish for ``grace_period`` seconds, commits what finished and leaves
  the rest uncommitted, so the group redelivers it.

:meth:`Worker.run` drives the loop with uvloop where it is installed (it is a dependency
on Linux and macOS): every attempt is a few wake-ups, a task and a future on the loop, and
uvloop does those for a fraction of the pure-Python loop's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from foldflow.producers import Publisher
from foldflow.settings import Settings
from foldflow.topics import Topology
from foldflow.workers.consumer import TaskConsumer
from foldflow.workers.handling import Slots
from foldflow.workers.registry import TaskRegistry

_new_loop: Callable[[], asyncio.AbstractEventLoop] | None
try:
    from uvloop import new_event_loop as _new_loop
except ImportError:  # Windows: uvloop is not built there
    _new_loop = None

__all__ = ["Worker"]

log = logging.getLogger("foldflow.worker")


class Worker:
    """Serves ``task_types`` (default: every type in ``registry``) until stopped."""

    def __init__(
        self,
        settings: Settings,
        registry: TaskRegistry,
        *,
        task_types: Iterable[str] | None = None,
        concurrency: int = 8,
        grace_period: float = 15.0,
        poll_timeout: float = 0.5,
        publisher: Publisher | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        types = tuple(dict.fromkeys(task_types if task_types is not None else registry.types()))
        if not types:
            raise ValueError("a worker needs at least one task type")
        unknown = [t for t in types if t not in registry]
        if unknown:
            raise ValueError(f"no handler registered for task type(s): {', '.join(unknown)}")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.settings = settings
        self.registry = registry
        self.task_types = types
        self.concurrency = concurrency
        self.grace_period = grace_period
        self.poll_timeout = poll_timeout
        self.topology = Topology.of(settings)
        self._publisher = publisher
        self._consumer_config = dict(consumer_config or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._hurry = asyncio.Event()  # a second signal: do not wait for in-flight tasks
        self._stop_requested = threading.Event()
        #: Set once every consumer has been assigned partitions (or the worker stopped).
        self.ready = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT, when ``install_signal_handlers``)."""
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(self.serve(install_signal_handlers=install_signal_handlers))

    def stop(self) -> None:
        """Ask the worker to shut down gracefully; safe from any thread or signal handler."""
        self._stop_requested.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        """Run the consumers until stopped, then shut down gracefully."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        if self._stop_requested.is_set():
            self._stopping.set()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        own_publisher = self._publisher is None
        # A result's ack wait no longer holds a handler slot, but it is on every step's
        # path: linger 1 ms (not 5) still batches the results of a burst.
        publisher = self._publisher or Publisher(
            self.settings, source="worker", config={"linger.ms": 1}
        )
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="task")
        slots = Slots(self.concurrency)
        consumers = [
            TaskConsumer(
                self.settings,
                task_type,
                self.registry,
                publisher=publisher,
                pool=pool,
                slots=slots,
                stopping=self._stopping,
                poll_timeout=self.poll_timeout,
                overrides=self._consumer_config,
            )
            for task_type in self.task_types
        ]
        log.info(
            "worker starting",
            extra={"task_types": list(self.task_types), "concurrency": self.concurrency},
        )
        try:
            await self._serve(consumers)
        finally:
            await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
            pool.shutdown(wait=False, cancel_futures=True)
            if own_publisher:
                await asyncio.to_thread(publisher.close)
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
            self.ready.set()
            log.info("worker stopped")

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping is not None and self._stopping.is_set():
            log.warning(
                "second signal: not waiting for in-flight tasks", extra={"signal": sig.name}
            )
            self._hurry.set()
            return
        log.info("signal received, shutting down", extra={"signal": sig.name})
        self.stop()

    async def _serve(self, consumers: Sequence[TaskConsumer]) -> None:
        assert self._stopping is not None
        loops = [asyncio.create_task(c.poll_loop(), name=f"poll {c.task_type}") for c in consumers]
        ready = asyncio.create_task(self._watch_ready(consumers))
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait([*loops, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            self._stopping.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._drain(consumers)
        finally:
            self._stopping.set()
            for task in (*loops, ready, stop):
                task.cancel()

    async def _watch_ready(self, consumers: Sequence[TaskConsumer]) -> None:
        while not all(c.assigned for c in consumers):
            await asyncio.sleep(0.05)
        self.ready.set()

    async def _drain(self, consumers: Sequence[TaskConsumer]) -> None:
        """Let in-flight attempts finish within the grace period; hand back the rest."""
        in_flight = [t for c in consumers for t in c.in_flight_tasks()]
        if in_flight:
            log.info(
                "waiting for in-flight tasks",
                extra={"in_flight": len(in_flight), "grace_period": self.grace_period},
            )
            started = time.monotonic()
            deadline = started + self.grace_period
            pending: set[asyncio.Future[Any]] = set(in_flight)
            hurry: asyncio.Future[Any] = asyncio.create_task(self._hurry.wait())
            while pending and not self._hurry.is_set() and time.monotonic() < deadline:
                _, pending = await asyncio.wait(
                    {*pending, hurry},
                    timeout=deadline - time.monotonic(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending.discard(hurry)
            hurry.cancel()
            if pending:
                log.warning(
                    "grace period over; leaving tasks uncommitted for redelivery",
                    extra={"unfinished": len(pending), "waited": time.monotonic() - started},
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for c in consumers:
            await c.commit_finished(final=True)
