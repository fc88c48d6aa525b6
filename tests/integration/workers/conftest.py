"""Fixtures for the worker tests: a private topic set, a command sender, result/DLQ readers,
and a real :class:`~foldflow.workers.runtime.Worker` running in a thread of this process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from foldflow.admin import ensure_topics
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import Envelope, ExecuteTask, dump_json, task_id
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, Topology
from foldflow.workers.builtin import registry as builtin_registry
from foldflow.workers.registry import TaskRegistry
from foldflow.workers.runtime import Worker

#: Task types of the test registry (served besides the built-in ones).
TEST_TYPES = ("test.slow", "test.big")
WAIT_S = 60.0  # upper bound of every wait: a hang fails the test instead of blocking


@pytest.fixture
def settings(stack: Settings, unique_name: Callable[..., str]) -> Settings:
    """Settings with a private topic prefix; every topic (and task topic) created."""
    s = Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=f"{unique_name()}.",
        partitions=2,
    )
    ensure_topics(s, task_types=(*BUILTIN_TASK_TYPES, *TEST_TYPES))
    return s


@pytest.fixture
def topology(settings: Settings) -> Topology:
    return Topology.of(settings)


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    with Publisher(settings, source="test") as p:
        yield p


@dataclass
class Sender:
    """Builds and publishes ``task.execute.v1`` commands as the orchestrator would."""

    publisher: Publisher
    topology: Topology
    sent: list[Envelope] = field(default_factory=list)

    def __call__(
        self,
        task_type: str,
        input: object,
        *,
        attempt: int = 1,
        timeout_ms: int = 30_000,
        workflow_id: str | None = None,
        step_id: str = "s1",
        headers: list[tuple[str, bytes]] | None = None,
        topic_type: str | None = None,
    ) -> Envelope:
        wf = workflow_id or f"wf-{uuid.uuid4().hex[:8]}"
        command = Envelope(
            event_id=str(uuid.uuid4()),
            timestamp=int(time.time() * 1000),
            source="test",
            correlation_id=f"corr-{wf}",
            workflow_id=wf,
            payload=ExecuteTask(
                task_id=task_id(wf, step_id, attempt),
                task_type=task_type,
                step_id=step_id,
                attempt=attempt,
                kind="step",
                input_json=dump_json(input),
                timeout_ms=timeout_ms,
            ),
        )
        self.publisher.publish(
            self.topology.task(topic_type or task_type), command, headers=headers
        )
        self.sent.append(command)
        return command


@pytest.fixture
def send(publisher: Publisher, topology: Topology) -> Sender:
    return Sender(publisher, topology)


class Reader:
    """Reads a topic from the beginning with a private group; every wait is bounded."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            kafka_config(settings, {
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            })
        )
        self.consumer.subscribe([topic])
        self.messages: list[Message] = []

    def read(self, n: int, *, timeout: float = WAIT_S) -> list[Message]:
        """At least the first ``n`` records (fewer if ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self.messages.append(msg)
        return list(self.messages)

    def envelopes(self, n: int, *, timeout: float = WAIT_S) -> list[Envelope]:
        return [decode(m.value() or b"") for m in self.read(n, timeout=timeout)]

    def where(
        self, predicate: Callable[[Envelope], bool], *, timeout: float = WAIT_S
    ) -> Envelope | None:
        """The first result matching ``predicate`` (waits for it, bounded)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for env in self.envelopes(seen + 1, timeout=max(0.0, deadline - time.monotonic()))[
                seen:
            ]:
                if predicate(env):
                    return env
            seen = len(self.messages)
        return None

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def results(settings: Settings, topology: Topology) -> Iterator[Reader]:
    reader = Reader(settings, topology.results)
    yield reader
    reader.close()


@pytest.fixture
def dlq(settings: Settings, topology: Topology) -> Iterator[Reader]:
    reader = Reader(settings, topology.dlq)
    yield reader
    reader.close()


@pytest.fixture
def test_registry() -> TaskRegistry:
    """The built-in tasks plus ``test.slow`` (sync, sleeps ``seconds``, tracks concurrency)
    and ``test.big`` (returns a string of ``bytes`` characters)."""
    extra = TaskRegistry()
    state = {"running": 0, "max": 0}
    lock = threading.Lock()

    @extra.task("test.slow")
    def slow(input: dict[str, float], ctx: object) -> dict[str, int]:
        with lock:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
        try:
            time.sleep(input.get("seconds", 0.2))
        finally:
            with lock:
                state["running"] -= 1
        return {"max_seen": state["max"]}

    @extra.task("test.big")
    def big(input: dict[str, int], ctx: object) -> str:
        return "x" * input["bytes"]

    registry = builtin_registry.merged(extra)
    registry.concurrency_state = state  # type: ignore[attr-defined]
    return registry


@dataclass
class RunningWorker:
    worker: Worker
    thread: threading.Thread

    def stop(self, *, timeout: float = WAIT_S) -> None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def start_worker(
    settings: Settings, test_registry: TaskRegistry
) -> Iterator[Callable[..., RunningWorker]]:
    """``start_worker(task_types=..., concurrency=...)``: a real worker in a thread, ready
    (partitions assigned) when returned; stopped at teardown."""
    running: list[RunningWorker] = []

    def start(**kwargs: object) -> RunningWorker:
        kwargs.setdefault("task_types", BUILTIN_TASK_TYPES)
        kwargs.setdefault("consumer_config", {"session.timeout.ms": 6000})
        worker = Worker(settings, test_registry, **kwargs)  # type: ignore[arg-type]
        thread = threading.Thread(
            target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True
        )
        thread.start()
        assert worker.ready.wait(WAIT_S), "worker never got its partitions"
        rw = RunningWorker(worker, thread)
        running.append(rw)
        return rw

    yield start
    for rw in running:
        if rw.thread.is_alive():
            rw.stop()


def committed(settings: Settings, task_type: str, partitions: int = 2) -> dict[int, int]:
    """The group ``wf.worker.<type>``'s committed offsets per partition (-1001: none)."""
    topology = Topology.of(settings)
    consumer = Consumer(
        kafka_config(settings, {
            "group.id": topology.worker_group(task_type),
        })
    )
    try:
        tps = [TopicPartition(topology.task(task_type), p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


@pytest.fixture
def committed_offsets(settings: Settings) -> Callable[[str], dict[int, int]]:
    """``committed_offsets(task_type)``: :func:`committed` for this test's topics."""
    return lambda task_type: committed(settings, task_type, settings.partitions)
