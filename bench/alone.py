"""The orchestrator alone, at saturation: inputs/s, CPU per input, memory per workflow.

With the workers and the projector stopped, N one-step workflows whose task type no
worker serves are started at once (a backlog on ``wf.commands``): the orchestrator takes
every start as fast as it can, and N workflows stay active, each waiting for its task
(with a pending attempt timer). Then N results are written to ``wf.results`` and it
completes every workflow as fast as it can. The group's committed offsets say when it
is done (the inputs were written without transactions, so the end offset is the last
record's plus one). CPU comes from ``/proc`` (the orchestrator's threads included),
memory from its VmRSS before, with N workflows active, and after.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition

from foldflow.bench.results import AloneResult
from foldflow.bench.services import ServiceProcess, cpu_seconds, rss_mb
from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.producers import producer_config
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, StartWorkflow, TaskSucceeded, dump_json, task_id
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["SINK_TASK_TYPE", "run_alone", "sink_definition"]

#: A task type no worker serves: the workflows wait for results the bench writes itself.
SINK_TASK_TYPE = "bench.sink"
TENANT = "default"


def sink_definition() -> Definition:
    """``bench.sink-k1``: one task step nobody serves, a timeout far past the run."""
    return Definition.from_data({
        "name": "bench.sink-k1",
        "version": 1,
        "description": "foldflow bench: the orchestrator alone",
        "steps": [{"id": "s1", "task": SINK_TASK_TYPE, "input": {"n": "${input.n}"},
                   "timeout": "1h", "retry": {"max_attempts": 1}}],
    })  # fmt: skip


def _produce(settings: Settings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(settings, source="bench-alone"))
    for n, (key, value) in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(120)


def _caught_up(consumer: Consumer, topic: str, partitions: int, group: str) -> bool:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=30)}
    for p in range(partitions):
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if committed.get(p, -1) < high:
            return False
    return True


def _wait(settings: Settings, topic: str, *, group: str, timeout: float,
          progress: Callable[[str], None]) -> float:  # fmt: skip
    """Wait until ``group`` committed every offset of ``topic``; return when (monotonic)."""
    consumer = Consumer(kafka_config(settings, {"group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed"}))
    try:
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + 10
        while not _caught_up(consumer, topic, settings.partitions, group):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the orchestrator did not get through {topic} in {timeout}s")
            if time.monotonic() >= next_report:
                next_report += 10
                progress(f"orchestrator alone: working through {topic}")
            time.sleep(0.1)
        return time.monotonic()
    finally:
        consumer.close()


def run_alone(
    settings: Settings,
    orchestrator: ServiceProcess,
    *,
    workflows: int,
    run_id: str,
    progress: Callable[[str], None],
    timeout: float = 1800.0,
) -> AloneResult:
    """Start ``workflows`` sink workflows, then complete them; measure both halves."""
    topology = Topology.of(settings)
    group = f"{settings.topic_prefix}foldflow-orchestrator"
    ids = [f"{run_id}-alone-{n:07d}" for n in range(workflows)]
    now = int(time.time() * 1000)
    starts = [(wf.encode(), encode(Envelope(
        event_id=str(uuid.uuid4()), timestamp=now, source="bench", correlation_id=wf,
        workflow_id=wf, payload=StartWorkflow("bench.sink-k1", 1, dump_json({"n": n}), TENANT),
        tenant=TENANT))) for n, wf in enumerate(ids)]  # fmt: skip
    results = [(wf.encode(), encode(Envelope(
        event_id=str(uuid.uuid4()), timestamp=now, source="bench", correlation_id=wf,
        workflow_id=wf, payload=TaskSucceeded(task_id(wf, "s1", 1), "s1", 1, "step", "{}"),
        tenant=TENANT))) for wf in ids]  # fmt: skip

    rss_before = rss_mb(orchestrator.pid) or 0.0
    progress(f"orchestrator alone: {workflows:,} starts")
    cpu0, t0 = cpu_seconds(orchestrator.pid) or 0.0, time.monotonic()
    _produce(settings, topology.commands, starts)
    t1 = _wait(settings, topology.commands, group=group, timeout=timeout, progress=progress)
    cpu1 = cpu_seconds(orchestrator.pid) or 0.0
    time.sleep(2.0)  # let the allocator settle before reading RSS
    rss_active = rss_mb(orchestrator.pid) or 0.0

    progress(f"orchestrator alone: {workflows:,} results")
    cpu2, t2 = cpu_seconds(orchestrator.pid) or 0.0, time.monotonic()
    _produce(settings, topology.results, results)
    t3 = _wait(settings, topology.results, group=group, timeout=timeout, progress=progress)
    cpu3 = cpu_seconds(orchestrator.pid) or 0.0
    rss_after = rss_mb(orchestrator.pid) or 0.0
    return AloneResult(
        workflows=workflows,
        start_seconds=t1 - t0,
        start_cpu_seconds=cpu1 - cpu0,
        result_seconds=t3 - t2,
        result_cpu_seconds=cpu3 - cpu2,
        rss_before_mb=rss_before,
        rss_active_mb=rss_active,
        rss_after_mb=rss_after,
    )
