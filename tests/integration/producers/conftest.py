"""Fixtures for the publisher tests: private topics on the real broker, a raw consumer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient, NewTopic

from foldflow.kafka import kafka_config
from foldflow.settings import Settings

CreateTopic = Callable[..., str]
ReadAll = Callable[[str, int], list[Message]]


@pytest.fixture
def create_topic(admin: AdminClient, unique_name: Callable[..., str]) -> Iterator[CreateTopic]:
    """``create_topic(partitions=6, config={}, name=None)`` -> a fresh topic, deleted afterwards."""
    created: list[str] = []

    def create(
        partitions: int = 6, config: dict[str, str] | None = None, name: str | None = None
    ) -> str:
        topic = name or unique_name()
        new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
        for future in admin.create_topics([new]).values():
            future.result()
        created.append(topic)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                break
            time.sleep(0.1)
        return topic

    yield create
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result()


@pytest.fixture
def read_all(stack: Settings, unique_name: Callable[..., str]) -> ReadAll:
    """``read_all(topic, n)``: the first ``n`` records of a topic, via a raw consumer.

    Bounded: gives up after 60 s and returns what it has, so the test's own assertion fails.
    """

    def read(topic: str, count: int) -> list[Message]:
        consumer = Consumer(
            kafka_config(stack, {
                "group.id": unique_name("g"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            })
        )
        try:
            consumer.subscribe([topic])
            out: list[Message] = []
            deadline = time.monotonic() + 60
            while len(out) < count and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    raise AssertionError(f"consumer error: {msg.error()}")
                out.append(msg)
            return out
        finally:
            consumer.close()

    return read
