"""A task consumer's pause survives nothing it should not: librdkafka keeps a partition the
consumer paused paused when the group assigns it again, so the consumer must not take a
reassignment for a resume (the worker would never fetch those partitions again).

The consumer's thread-side calls are driven from the test thread, one at a time, so the
rebalance lands exactly while the partitions are paused and a slot frees right after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka import Consumer

from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.settings import Settings
from foldflow.topics import Topology
from foldflow.workers.consumer import TaskConsumer
from foldflow.workers.handling import Slots
from foldflow.workers.registry import TaskRegistry

WAIT_S = 30.0


@pytest.fixture
def task_consumer(
    settings: Settings, publisher: Publisher, test_registry: TaskRegistry
) -> Iterator[TaskConsumer]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        consumer = TaskConsumer(
            settings, "test.slow", test_registry, publisher=publisher, pool=pool,
            slots=Slots(1), stopping=asyncio.Event(), poll_timeout=0.1,
            overrides={"session.timeout.ms": 6000},
        )  # fmt: skip
        consumer._subscribe()
        yield consumer
        consumer._consumer.close()


def poll_until(consumer: TaskConsumer, free: int, done: Callable[[], bool],
               seen: set[tuple[int, int]], what: str) -> None:  # fmt: skip
    """Call the consumer's poll with ``free`` slots until ``done()``; record what it hands out."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"{what} not within {WAIT_S}s"
        for msg in consumer._poll(free):
            if msg.error() is None:
                seen.add((msg.partition() or 0, msg.offset() or 0))


def test_partitions_paused_before_a_rebalance_are_fetched_once_a_slot_frees(
    settings: Settings, send, task_consumer: TaskConsumer
) -> None:
    sent = [send("test.slow", {"seconds": 0}, workflow_id=f"wf-{i}") for i in range(8)]
    seen: set[tuple[int, int]] = set()
    # No free slot from the start: the consumer pauses whatever it is assigned.
    poll_until(task_consumer, 0, lambda: task_consumer.assigned, seen, "the first assignment")
    for _ in range(5):
        task_consumer._poll(0)

    # Another member joins and leaves: two rebalances, each landing while paused.
    other = Consumer(kafka_config(settings, {
        "group.id": Topology.of(settings).worker_group("test.slow"),
        "session.timeout.ms": 6000,
        "enable.auto.commit": False,
    }))  # fmt: skip
    other_assigned: list[bool] = []
    other.subscribe([Topology.of(settings).task("test.slow")],
                    on_assign=lambda c, ps: other_assigned.append(bool(ps)))  # fmt: skip
    task_consumer.assigned = False

    def joined() -> bool:
        other.poll(0.05)
        return task_consumer.assigned and any(other_assigned)

    poll_until(task_consumer, 0, joined, seen, "the rebalance of a member joining")
    task_consumer.assigned = False
    other.close()
    poll_until(task_consumer, 0, lambda: task_consumer.assigned, seen,
               "the rebalance of a member leaving")  # fmt: skip

    # A slot frees right after the reassignment: every command must now come.
    poll_until(task_consumer, 1, lambda: len(seen) >= len(sent), seen,
               "every command fetched")  # fmt: skip
