"""The CLI's Kafka paths on the real broker: partition choice, following events, the DLQ."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from foldflow.dlq import read_dead_letters, replay
from foldflow.follow import EventFollower, partition_for
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher, producer_config
from foldflow.schemas import codec
from foldflow.schemas.messages import CancelWorkflow, Envelope, WorkflowCompleted, event_id_for
from foldflow.settings import Settings
from foldflow.topics import Topology


def _envelope(workflow_id: str, sequence: int | None = None) -> Envelope:
    if sequence is None:
        return Envelope(str(uuid.uuid4()), 1, "test", "c", workflow_id, CancelWorkflow("t"))
    return Envelope(event_id_for(workflow_id, sequence), 1, "orchestrator", "c", workflow_id,
                    WorkflowCompleted("{}"), sequence)


def test_partition_for_matches_the_producers_partitioner(topics: Settings) -> None:
    topic = Topology.of(topics).commands
    ids = [f"wf-{i}-{uuid.uuid4().hex[:6]}" for i in range(60)]
    with Publisher(topics, source="test") as publisher:
        delivered = publisher.publish_many([(topic, _envelope(i)) for i in ids])
    assert [m.partition() for m in delivered] == [partition_for(i, topics.partitions) for i in ids]
    assert len({m.partition() for m in delivered}) > 1


def test_the_follower_sees_only_its_workflows_from_when_it_started_watching(
    topics: Settings,
) -> None:
    events = Topology.of(topics).events
    unwatched, mine, other = "wf-unwatched", "wf-mine", "wf-other"
    with Publisher(topics, source="test") as publisher:
        publisher.publish(events, _envelope(mine, 1))  # before watching: not seen
        with EventFollower(topics) as follower:
            follower.watch([mine])
            publisher.publish_many([(events, _envelope(other, 1)), (events, _envelope(mine, 2)),
                                    (events, _envelope(unwatched, 1))])
            seen: list[Envelope] = []
            for _ in range(30):
                seen += follower.poll(timeout=1.0)
                if seen:
                    break
    assert [(e.workflow_id, e.sequence) for e in seen] == [(mine, 2)]


def test_dead_letters_are_listed_and_replayed_to_their_origin(topics: Settings) -> None:
    topology = Topology.of(topics)
    good = codec.encode(_envelope("wf-dlq-1"))
    with Publisher(topics, source="test") as publisher:
        publisher.send_to_dlq(topology.commands, b"wf-dlq-1", good, [("event_type", b"x")],
                              "handler blew up", partition=2, offset=40)
        publisher.send_to_dlq(topology.results, b"wf-dlq-2", b"\x00junk", None,
                              ValueError("bad bytes"), partition=5, offset=7)
    letters = read_dead_letters(topics)
    assert sorted((d.origin_topic, d.origin_partition, d.origin_offset, d.event_type)
                  for d in letters) == sorted([
        (topology.commands, 2, 40, "workflow.cancel.v1"),
        (topology.results, 5, 7, None),
    ])  # fmt: skip
    assert {d.reason_kind for d in letters} == {"other", "ValueError"}

    producer = Producer(producer_config(topics, source="test-replay"))
    assert len(replay(producer, letters)) == 2

    consumer = Consumer(kafka_config(topics, {
                         "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topology.commands, 2, 0),
                     TopicPartition(topology.results, 5, 0)])
    got: dict[str, tuple[bytes | None, bytes | None, list[str]]] = {}
    for _ in range(30):
        for record in consumer.consume(num_messages=10, timeout=1.0):
            if record.error() is None:
                names = [h[0] for h in record.headers() or []]
                got[record.topic() or ""] = (record.key(), record.value(), names)
        if len(got) == 2:
            break
    consumer.close()
    assert got[topology.commands][:2] == (b"wf-dlq-1", good)
    # the dlq.* headers are gone; the replay's send span may add its traceparent
    assert [n for n in got[topology.commands][2] if n != "traceparent"] == ["event_type"]
    assert got[topology.results][:2] == (b"wf-dlq-2", b"\x00junk")
    assert read_dead_letters(topics, since_ms=2**62) == []


def test_dead_letters_written_in_a_transaction_are_read_to_the_end_at_once(
    topics: Settings,
) -> None:
    """A transactional writer (the orchestrator) ends a partition with a commit marker that no
    record stands at: the reader stops there instead of waiting out its timeout and failing."""
    import time

    dlq_topic = Topology.of(topics).dlq
    producer = Producer({**producer_config(topics, source="test-txn-dlq"),
                         "transactional.id": f"t-{uuid.uuid4().hex}"})  # fmt: skip
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(dlq_topic, key=b"wf-txn", value=b"\x00junk", partition=0,
                     headers=[("dlq.reason", b"parked in a transaction")])  # fmt: skip
    producer.commit_transaction(10)
    began = time.monotonic()
    letters = read_dead_letters(topics, timeout=5.0)
    assert [d.reason for d in letters] == ["parked in a transaction"]
    assert time.monotonic() - began < 5.0
    newest = read_dead_letters(topics, timeout=5.0, newest_per_partition=1)
    assert newest == []  # the newest offset of partition 0 is the marker, not a record
def _transactional(topics: Settings, records: list[tuple[str, bytes, bytes]], *, commit: bool
                   ) -> None:  # fmt: skip
    producer = Producer({**producer_config(topics, source="test"),
                         "transactional.id": f"test-{uuid.uuid4().hex}"})  # fmt: skip
    producer.init_transactions(30)
    producer.begin_transaction()
    for topic, key, value in records:
        producer.produce(topic, value, key, partition=0, headers=[("dlq.reason", b"r")])
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)


def test_dead_letters_parked_in_transactions_are_read_to_the_end(topics: Settings) -> None:
    """The orchestrator parks dead letters in its transactions: a commit marker follows the
    last record (the end offset is past it) and aborted records must not show."""
    dlq = Topology.of(topics).dlq
    _transactional(topics, [(dlq, b"wf-aborted", b"never")], commit=False)
    _transactional(topics, [(dlq, b"wf-kept-1", b"one"), (dlq, b"wf-kept-2", b"two")],
                   commit=True)  # fmt: skip
    letters = read_dead_letters(topics, timeout=10.0)  # raised "stalled" on the marker before
    assert sorted(d.key or b"" for d in letters) == [b"wf-kept-1", b"wf-kept-2"]
