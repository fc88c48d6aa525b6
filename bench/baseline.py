"""The raw Kafka ceiling of this machine, measured in the same run.

confluent-kafka with exactly the Publisher's producer settings (``acks=all``, idempotent,
``murmur2_random``, ``linger.ms=5``, lz4: :func:`foldflow.producers.publisher.producer_config`)
produces N messages the size of a real ``task.execute.v1`` command (real encoded
commands for distinct workflow ids, so lz4 sees realistic data) while a consumer reads
them back: messages/s of produce+consume is the ceiling a Foldflow figure is divided by.
A paced probe then measures one hop: produce → acked, and produce → consumed. A second
one measures one transactional hop, what each of the orchestrator's hops costs at least:
a transaction of one record that also commits an input offset (begin, produce,
``send_offsets_to_transaction``, ``commit_transaction``, with the orchestrator's producer
settings) → the record seen by a ``read_committed`` consumer.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from foldflow.bench.results import BaselineResult
from foldflow.bench.stats import rate, summarize
from foldflow.kafka import kafka_config
from foldflow.processors.runtime.kafka import transactional_producer_config
from foldflow.producers.publisher import producer_config
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, ExecuteTask, derived_id, dump_json, task_id
from foldflow.settings import Settings

__all__ = ["RawTopics", "run_baseline", "task_command"]

DISTINCT_VALUES = 512


def task_command(workflow_id: str, *, step: int = 1, task_type: str = "builtin.echo") -> bytes:
    """The encoded ``task.execute.v1`` the orchestrator sends for step ``s<step>`` of a
    bench workflow (same fields, same sizes)."""
    step_id = f"s{step}"
    envelope = Envelope(
        event_id=derived_id(str(uuid.uuid4()), 0),
        timestamp=int(time.time() * 1000),
        source="orchestrator",
        correlation_id=str(uuid.uuid4()),
        workflow_id=workflow_id,
        payload=ExecuteTask(
            task_id=task_id(workflow_id, step_id, 1),
            task_type=task_type,
            step_id=step_id,
            attempt=1,
            kind="step",
            input_json=dump_json({"step": step}),
            timeout_ms=30_000,
        ),
        tenant="default",
    )
    return encode(envelope)


@dataclass(frozen=True)
class RawTopics:
    """The private topics of the baseline (throughput, probe, transactional probe)."""

    throughput: str
    probe: str
    transactional_probe: str


def _create(settings: Settings, names: list[str]) -> None:
    admin = AdminClient(kafka_config(settings))
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=settings.partitions,
                  replication_factor=settings.replication_factor or -1) for n in names],
        operation_timeout=30,
    )
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and topics[n].error is None for n in names):
            return
        time.sleep(0.1)


def _consumer(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"bench-raw-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "isolation.level": "read_committed",  # the default; the transactional probe needs it
    }))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])
    return consumer


def _drain(consumer: Consumer, expected: int, done: threading.Event, out: list[float]) -> None:
    """Consume until ``expected`` messages arrived; append the time of the last one."""
    seen = 0
    deadline = time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        first = consumer.poll(0.2)  # consume(n, t) alone would wait for n messages or t
        if first is None:
            continue
        for msg in [first, *consumer.consume(num_messages=1000, timeout=0)]:
            if msg.error() is None:
                seen += 1
    out.append(time.perf_counter())
    done.set()


def _throughput(settings: Settings, topic: str, messages: int) -> tuple[float, float, int]:
    ids = [str(uuid.uuid4()) for _ in range(DISTINCT_VALUES)]
    values = [(i.encode(), task_command(i)) for i in ids]
    consumer = _consumer(settings, topic)
    consumer.consume(num_messages=1, timeout=1.0)  # join the partitions before the clock runs
    finished: list[float] = []
    done = threading.Event()
    reader = threading.Thread(target=_drain, args=(consumer, messages, done, finished),
                              name="bench-raw-consumer", daemon=True)
    producer = _warm_producer(settings, topic, source="bench-raw")
    acked = [0]

    def on_delivery(err: object, _msg: object) -> None:
        if err is None:
            acked[0] += 1

    reader.start()
    started = time.perf_counter()
    messages -= 1  # the warm-up message counts
    for n in range(messages):
        key, value = values[n % DISTINCT_VALUES]
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if n % 256 == 0:
            producer.poll(0)
    producer.flush(60)
    produced = time.perf_counter()
    done.wait(timeout=300)
    reader.join(timeout=5)
    consumer.close()
    consumed = finished[0] if finished else time.perf_counter()
    return (rate(acked[0], produced - started), rate(messages, consumed - started),
            len(values[0][1]))


def _warm_producer(settings: Settings, topic: str, *, source: str) -> Producer:
    """A producer that already has its metadata and idempotent producer id (one message
    sent and acked), so the clock measures steady state, not the handshake."""
    producer = Producer(producer_config(settings, source=source))
    producer.produce(topic, task_command(str(uuid.uuid4())), b"warm-up")
    producer.flush(30)
    return producer


def _warm_transactional_producer(settings: Settings, topic: str) -> Producer:
    """The orchestrator's transactional producer settings, initialised, one transaction
    committed (metadata, producer id and coordinator known before the clock runs)."""
    producer = Producer({**transactional_producer_config(settings),
                         "transactional.id": f"bench-raw-{uuid.uuid4()}"})  # fmt: skip
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, task_command(str(uuid.uuid4())), b"warm-up")
    producer.commit_transaction(30)
    return producer


def _probe(settings: Settings, topic: str, count: int, per_second: float, *,
           transactional: bool = False) -> tuple[list[float], list[float]]:
    """Paced single messages: (ack latencies, produce→consumed latencies) in ms.

    ``transactional``: each message in a transaction of its own that also commits an input
    offset, as the orchestrator commits; the first list then holds how long
    ``send_offsets_to_transaction`` + ``commit_transaction`` took.
    """
    consumer = _consumer(settings, topic)
    consumer.consume(num_messages=1, timeout=1.0)
    hops: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set() and len(hops) < count:
            msg = consumer.poll(0.1)  # consume(n) would wait for n messages or the timeout
            if msg is None or msg.error() is not None:
                continue
            stamp = dict(msg.headers() or []).get("t")
            if stamp is not None:
                hops.append((time.time() - float(stamp)) * 1000)

    group: Consumer | None = None
    if transactional:
        producer = _warm_transactional_producer(settings, topic)
        group = Consumer(kafka_config(settings, {"group.id": f"bench-raw-{uuid.uuid4()}"}))
        metadata = group.consumer_group_metadata()
    else:
        producer = _warm_producer(settings, topic, source="bench-raw-probe")
    count -= 1  # the warm-up message counts
    reader = threading.Thread(target=read, name="bench-raw-probe", daemon=True)
    reader.start()
    acks: list[float] = []
    wid = str(uuid.uuid4())
    value = task_command(wid)
    interval = 1.0 / per_second
    next_at = time.perf_counter()
    for n in range(count):
        sent = time.time()
        headers: list[tuple[str, str | bytes | None]] = [("t", repr(sent).encode())]
        if group is not None:
            producer.begin_transaction()
            producer.produce(topic, value, wid.encode(), headers=headers)
            began = time.perf_counter()
            producer.send_offsets_to_transaction([TopicPartition(topic, 0, n + 1)],
                                                 metadata, 30)
            producer.commit_transaction(30)
            acks.append((time.perf_counter() - began) * 1000)
        else:

            def on_delivery(err: object, _msg: object, sent: float = sent) -> None:
                if err is None:
                    acks.append((time.time() - sent) * 1000)

            producer.produce(topic, value, wid.encode(), on_delivery=on_delivery,
                             headers=headers)  # fmt: skip
        next_at += interval
        while (delay := next_at - time.perf_counter()) > 0:
            producer.poll(min(delay, 0.001))
    producer.flush(30)
    deadline = time.monotonic() + 10
    while len(hops) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(timeout=5)
    consumer.close()
    if group is not None:
        group.close()
    return acks, hops


def run_baseline(
    settings: Settings,
    topics: RawTopics,
    *,
    messages: int,
    probe_messages: int = 500,
    probe_rate: float = 250.0,
    transactions: int = 200,
    transaction_rate: float = 50.0,
) -> BaselineResult:
    """Measure raw Kafka on private ``topics`` (created here; the caller deletes them).

    The transactional probe is paced slower than the plain one: a transaction takes a few
    ms, so at 250/s they would run back to back."""
    _create(settings, [topics.throughput, topics.probe, topics.transactional_probe])
    produce_rate, pc_rate, size = _throughput(settings, topics.throughput, messages)
    acks, hops = _probe(settings, topics.probe, probe_messages, probe_rate)
    commits, txn_hops = _probe(settings, topics.transactional_probe, transactions,
                               transaction_rate, transactional=True)  # fmt: skip
    return BaselineResult(
        messages=messages,
        message_bytes=size,
        produce_per_s=produce_rate,
        produce_consume_per_s=pc_rate,
        hop_ms=summarize(hops),
        ack_ms=summarize(acks),
        transactional_hop_ms=summarize(txn_hops),
        commit_ms=summarize(commits),
    )
