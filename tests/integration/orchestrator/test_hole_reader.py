"""HoleReader: the records of one partition range, read straight from a real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from foldflow.settings import Settings
from processors.runtime.holes import HoleError, HoleReader


@pytest.fixture
def topic(admin: AdminClient, unique_name: Callable[..., str], stack: Settings) -> Iterator[str]:
    """A 2-partition topic with offsets 0..9 on partition 1 (values b"0".."9")."""
    name = unique_name()
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for i in range(10):
        producer.produce(name, key=b"k", value=str(i).encode(), partition=1,
                         headers=[("event_type", b"x"), ("empty", None)])
    assert producer.flush(30) == 0
    yield name
    admin.delete_topics([name])


@pytest.fixture
def reader(stack: Settings, unique_name: Callable[..., str]) -> Iterator[HoleReader]:
    r = HoleReader(stack, group=unique_name("g"), timeout=5)
    yield r
    r.close()


def test_reads_exactly_the_range_in_order(topic: str, reader: HoleReader) -> None:
    records = reader.read(topic, 1, 3, 7)
    assert [(r.topic, r.partition, r.offset, r.value) for r in records] == [
        (topic, 1, o, str(o).encode()) for o in range(3, 7)
    ]
    assert records[0].key == b"k"
    assert records[0].headers == [("event_type", b"x"), ("empty", b"")]


def test_one_reader_serves_successive_ranges(topic: str, reader: HoleReader) -> None:
    assert [r.offset for r in reader.read(topic, 1, 0, 1)] == [0]
    assert [r.offset for r in reader.read(topic, 1, 8, 10)] == [8, 9]
    assert [r.offset for r in reader.read(topic, 1, 2, 4)] == [2, 3]


def test_a_range_past_the_end_times_out_with_a_clear_error(topic: str, reader: HoleReader) -> None:
    with pytest.raises(HoleError, match=r"offsets 9\.\.11 took over 5s \(1 read\)"):
        reader.read(topic, 1, 9, 12)
