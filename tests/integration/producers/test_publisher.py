"""Publisher against the real broker: every message type, acks, failures, DLQ, partitioning."""

from __future__ import annotations

import asyncio
import random
import secrets
import string
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, Message
from opentelemetry import trace
from prometheus_client import REGISTRY

from foldflow.observability.tracing import configure_tracing
from foldflow.partitioner import partition_for
from foldflow.producers import Publisher, PublishError
from foldflow.schemas.codec import NotAvroError, decode
from foldflow.schemas.fixtures import sample_envelope
from foldflow.schemas.messages import MESSAGE_TYPES, Envelope, StartWorkflow
from foldflow.settings import Settings

CreateTopic = Callable[..., str]
ReadAll = Callable[[str, int], list[Message]]


def _headers(msg: Message) -> dict[str, bytes]:
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v if isinstance(v, bytes) else str(v).encode() for k, v in items}


def _key(msg: Message) -> bytes:
    key = msg.key()
    assert isinstance(key, bytes)
    return key


@pytest.fixture
def publisher(stack: Settings) -> Iterator[Publisher]:
    with Publisher(stack, source="test-publisher") as pub:
        yield pub


def _start(workflow_id: str, size: int = 10) -> Envelope:
    """A StartWorkflow command whose input is ``size`` random (incompressible) bytes."""
    return Envelope(
        event_id=f"cmd-{workflow_id}",
        timestamp=1_767_225_600_000,
        source="test",
        correlation_id=workflow_id,
        workflow_id=workflow_id,
        payload=StartWorkflow("demo", 1, f'"{secrets.token_urlsafe(size)}"'),
        tenant="acme",
    )


def test_every_message_type_reaches_a_raw_consumer_decodable_with_headers(
    stack: Settings, publisher: Publisher, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    topic = create_topic()
    configure_tracing(stack, service="test")
    sent = {t: sample_envelope(t) for t in MESSAGE_TYPES}
    with trace.get_tracer(__name__).start_as_current_span("publish-all") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        acked = [publisher.publish(topic, env, key=env.event_type) for env in sent.values()]
    assert all(m.error() is None and m.offset() is not None for m in acked)

    received = read_all(topic, len(sent))

    assert len(received) == len(sent)
    for msg in received:
        headers = _headers(msg)
        event_type = headers["event_type"].decode()
        assert _key(msg) == event_type.encode()
        assert decode(msg.value()) == sent[event_type]
        assert headers["traceparent"].decode().split("-")[1] == trace_id


def test_publish_many_waits_for_every_ack_and_keys_by_workflow_id(
    publisher: Publisher, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    topic = create_topic(partitions=3)
    envelopes = [_start(f"wf-{i}") for i in range(50)]

    acked = publisher.publish_many([(topic, e) for e in envelopes])

    assert [decode(m.value()) for m in acked] == envelopes
    received = read_all(topic, 50)
    assert sorted(_key(m) for m in received) == sorted(e.workflow_id.encode() for e in envelopes)
    assert {_key(m): decode(m.value()) for m in received} == {
        e.workflow_id.encode(): e for e in envelopes
    }


async def test_publish_async_awaits_the_ack_without_blocking_the_loop(
    publisher: Publisher, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    topic = create_topic(partitions=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    last = _start("wf-last")
    task = asyncio.create_task(ticker())
    acked = await publisher.publish_many_async([(topic, _start(f"wf-{i}")) for i in range(20)])
    one = await publisher.publish_async(topic, last)
    task.cancel()

    assert [m.offset() for m in acked] == list(range(20))
    assert one.offset() == 20
    assert ticks > 0  # the loop ran other tasks while the acks were pending
    assert decode(read_all(topic, 21)[-1].value()) == last


async def test_a_cancelled_async_publish_leaves_the_publisher_working(
    publisher: Publisher, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    topic = create_topic(partitions=1)
    cancelled = asyncio.create_task(publisher.publish_async(topic, _start("wf-cancelled")))
    await asyncio.sleep(0)
    cancelled.cancel()
    later = _start("wf-later")

    acked = await publisher.publish_async(topic, later)

    offset = acked.offset()
    assert cancelled.cancelled()
    assert offset in (0, 1)  # the cancelled one may still have been written first
    received = await asyncio.to_thread(read_all, topic, offset + 1)
    assert decode(received[-1].value()) == later


async def test_an_async_publish_whose_report_never_comes_gives_up_after_its_wait(
    stack: Settings,
) -> None:
    # A broker that never answers, and librdkafka's own timeout far beyond our wait: the
    # waiter's timer, not a delivery report, ends the wait.
    settings = stack.model_copy(update={"kafka_bootstrap": "127.0.0.1:1",
                                        "publish_timeout_ms": 60_000})  # fmt: skip
    with Publisher(settings, source="test-unanswered") as publisher:
        publisher._timeout_s = 0.3
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(PublishError, match="no delivery report in time"):
            await publisher.publish_async("t-unanswered", _start("wf-unanswered"))
        assert loop.time() - began < 30  # the timer's wait, not librdkafka's minute
        publisher._producer.purge()  # nothing left for close() to flush


def test_a_message_the_broker_refuses_raises_publish_error(
    publisher: Publisher, create_topic: CreateTopic
) -> None:
    topic = create_topic(partitions=1, config={"max.message.bytes": "1024"})

    with pytest.raises(PublishError) as caught:
        publisher.publish(topic, _start("wf-big", size=20_000))

    assert caught.value.error is not None
    assert caught.value.error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert caught.value.topic == topic and caught.value.key == b"wf-big"
    assert "wf-big" in str(caught.value)


async def test_async_publish_failure_raises_publish_error(
    publisher: Publisher, create_topic: CreateTopic
) -> None:
    topic = create_topic(partitions=1, config={"max.message.bytes": "1024"})

    with pytest.raises(PublishError):
        await publisher.publish_async(topic, _start("wf-big", size=20_000))


def test_a_topic_that_does_not_exist_is_not_created_and_raises(
    stack: Settings,
) -> None:
    settings = stack.model_copy(update={"publish_timeout_ms": 3000})
    missing = f"missing-{random.randrange(10**9)}"

    with Publisher(settings, source="test") as pub, pytest.raises(PublishError) as caught:
        pub.publish(missing, _start("wf-1"))

    assert caught.value.error is not None
    assert caught.value.error.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
    )


_DLQ_LABELS = {"topic": "wf.results", "reason_kind": "NotAvroError"}


def test_send_to_dlq_keeps_the_original_bytes_and_adds_the_reason(
    stack: Settings, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    settings = stack.model_copy(update={"topic_prefix": f"dlq{random.randrange(10**9)}."})
    dlq = create_topic(partitions=1, name=settings.topic_prefix + "wf.dlq")
    before = REGISTRY.get_sample_value("foldflow_dlq_messages_total", _DLQ_LABELS) or 0.0

    with Publisher(settings, source="test") as pub:
        pub.send_to_dlq(
            "wf.results",
            b"wf-9",
            b"\x00garbage",
            [("event_type", b"task.succeeded.v1")],
            NotAvroError("not Avro single-object encoding"),
            partition=3,
            offset=42,
        )

    (msg,) = read_all(dlq, 1)
    headers = _headers(msg)
    assert (msg.key(), msg.value()) == (b"wf-9", b"\x00garbage")
    assert headers["event_type"] == b"task.succeeded.v1"
    assert headers["dlq.reason"] == b"not Avro single-object encoding"
    assert headers["dlq.reason_kind"] == b"NotAvroError"
    assert (headers["dlq.topic"], headers["dlq.partition"], headers["dlq.offset"]) == (
        b"wf.results",
        b"3",
        b"42",
    )
    assert int(headers["dlq.timestamp"]) > 1_700_000_000_000
    assert REGISTRY.get_sample_value("foldflow_dlq_messages_total", _DLQ_LABELS) == before + 1


def _workflow_ids(n: int) -> list[str]:
    rng = random.Random(20260101)
    alphabet = string.ascii_letters + string.digits + "-_:."
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(n)
    ]


async def test_confluent_puts_every_key_on_the_murmur2_partition_our_readers_compute(
    publisher: Publisher, create_topic: CreateTopic, read_all: ReadAll
) -> None:
    topic = create_topic(partitions=6)
    ids = [*_workflow_ids(200), "wf-é-ü-ß", "工作流-1", "a" * 300]  # non-ASCII, long keys

    confluent = {
        _key(m): m.partition()
        for m in await publisher.publish_many_async([(topic, _start(i)) for i in ids])
    }

    assert len(set(confluent.values())) == 6  # the keys spread over every partition
    assert confluent == {i.encode(): partition_for(i, 6) for i in ids}
    on_partitions: dict[bytes, set[int]] = {}
    for msg in await asyncio.to_thread(read_all, topic, len(ids)):
        on_partitions.setdefault(_key(msg), set()).add(int(msg.partition() or 0))
    assert on_partitions == {key: {partition} for key, partition in confluent.items()}
