"""The orchestrator's Kafka transactions under fire: zombies, kills at every point of the
transaction cycle, scaling with rebalances mid-transaction (real processes, real broker).

Every check reads the log as a ``read_committed`` consumer does: each workflow completes
exactly once, each event sequence is on ``wf.events`` exactly once (not merely "duplicates
identical": aborted transactions are invisible), contiguous from 1. The orchestrators run
through ``marked_orchestrator.py``, which stamps each record with the instance that
produced it and when (header ``test.stamp``), and can SIGKILL itself at a chosen point.

``FOLDFLOW_CHAOS_KILLS`` sets how many kills the kill test makes (default 12, about two
minutes here; 50 is the long run).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from orchestrator_harness import (
    STARTUP_S,
    Deployment,
    EventLog,
    Service,
    assert_log_invariants,
)

from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.producers import PublishError
from foldflow.settings import Settings
from foldflow.topics import Topology

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "marked_orchestrator.py"
WAIT_S = 240.0
RECOVERED = r"recovered \d+ workflows on partitions \[[\d, ]*\]"
KILLS = int(os.environ.get("FOLDFLOW_CHAOS_KILLS", "12"))
KILL_POINTS = ("begin", "produce", "offsets", "commit", "committed", "external")
#: coordinator's transaction timeout check runs every 10 s (Kafka's default
#: transaction.abort.timed.out.transaction.cleanup.interval.ms), the timeout is 10 s
ZOMBIE_STOP_S = 25.0

#: Three task steps around a short sleep timer: every kind of input, a few seconds long.
FLOW = {
    "name": "txn-flow",
    "steps": [
        {"id": "s1", "task": "builtin.echo", "input": {"n": 1}},
        {"id": "s2", "task": "builtin.echo", "after": ["s1"], "input": {"n": 2}},
        {"id": "nap", "sleep": "300ms", "after": ["s2"]},
        {"id": "s3", "task": "builtin.echo", "after": ["nap"], "input": {"n": 3}},
    ],
}


class Feeder:
    """Starts ``txn-flow`` workflows in a thread, ``per_second`` of them, until stopped."""

    def __init__(self, deployment: Deployment, *, per_second: float) -> None:
        self.deployment = deployment
        self.interval = 1.0 / per_second
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(60)
        return list(self.ids)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            try:
                self.ids.append(self.deployment.start("txn-flow", {"n": n}))
                n += 1
            except PublishError:
                pass  # the broker was away: the next start tries again


@pytest.fixture
def flow(deployment: Deployment) -> Deployment:
    deployment.register(Definition.from_data(FLOW))
    return deployment


def marked(settings: Settings, log_dir: Path, name: str, *, instance: str,
           env: dict[str, str] | None = None) -> Service:  # fmt: skip
    """An orchestrator through ``marked_orchestrator.py``, started."""
    return Service(name, settings, log_dir, script=SCRIPT, instance=instance, env=env).start()


def assert_exactly_once(events: EventLog, workflow_ids: list[str]) -> None:
    """Every workflow ended; each of its sequences is on the log once, contiguous from 1."""
    for wf in workflow_ids:
        sequences = [e.sequence for e in events.by_workflow[wf]]
        assert sequences == list(range(1, len(sequences) + 1)), (wf, sequences)
    assert_log_invariants(events, workflow_ids)


def stamped(settings: Settings, *, isolation: str) -> list[tuple[str, str, float]]:
    """``(topic, instance, produce time)`` of every stamped record of the deployment."""
    topology = Topology.of(settings)
    topics = [topology.events, topology.commands, topology.results, topology.dlq,
              topology.orchestrator_state, topology.task("builtin.echo")]  # fmt: skip
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"test-stamps-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    }))  # fmt: skip
    assigned = [TopicPartition(t, p, OFFSET_BEGINNING)
                for t in topics for p in range(settings.partitions)]  # fmt: skip
    consumer.assign(assigned)
    open_ = {(tp.topic, tp.partition) for tp in assigned}
    out: list[tuple[str, str, float]] = []
    deadline = time.monotonic() + 120
    try:
        while open_ and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_.discard((msg.topic() or "", msg.partition() or 0))
                    continue
                stamp = dict(msg.headers() or []).get("test.stamp")
                if isinstance(stamp, bytes):
                    instance, _, at = stamp.decode().rpartition(":")
                    out.append((msg.topic() or "", instance, float(at)))
    finally:
        consumer.close()
    assert not open_, f"did not reach the end of {sorted(open_)}"
    return out


def test_a_zombie_orchestrator_is_fenced_and_nothing_it_writes_becomes_visible(
    settings: Settings, flow: Deployment, events: EventLog, tmp_path: Path,
    spawn: Callable[..., Service],
) -> None:  # fmt: skip
    spawn("worker", "worker", "--concurrency", "16")
    # The zombie holds its transactions open for 2 s (it is nearly always inside one) and
    # exits on the fence instead of starting afresh, as under a supervisor.
    zombie = marked(settings, tmp_path, "zombie", instance="zombie", env={
        "FOLDFLOW_ORCHESTRATOR_COMMIT_INTERVAL_MS": "2000",
        "FOLDFLOW_ORCHESTRATOR_RESTARTS_ON_FENCE": "0",
    })  # fmt: skip
    try:
        _zombie(settings, flow, events, zombie, spawn)
    finally:
        if zombie.proc is not None and zombie.proc.poll() is None:
            os.kill(zombie.proc.pid, signal.SIGCONT)
            zombie.stop()


def _zombie(settings: Settings, flow: Deployment, events: EventLog, zombie: Service,
            spawn: Callable[..., Service]) -> None:  # fmt: skip
    zombie.wait_for_log(RECOVERED, timeout=STARTUP_S)
    other = spawn("orchestrator-b", "orchestrator")
    other.wait_for_log(r"recovered \d+ workflows on partitions \[\d", timeout=STARTUP_S)
    zombie.wait_for_log(r"recovered \d+ workflows on partitions \[\d", timeout=STARTUP_S,
                        count=2)  # its share after the rebalance  # fmt: skip
    assert zombie.proc is not None
    with Feeder(flow, per_second=8) as feeder:
        fenced = False
        resumed_at = 0.0
        for _attempt in range(3):  # a zombie stopped outside a transaction is not fenced
            deadline = time.monotonic() + WAIT_S
            while not any(s[1] == "zombie" for s in stamped(settings, isolation="read_committed")):
                assert time.monotonic() < deadline, "the zombie-to-be never committed"
                time.sleep(1.0)  # it commits before it is stopped, so its stamps can be seen
            os.kill(zombie.proc.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            other.wait_for_log(r"recovered \d+ workflows on partitions \[0, 1, 2, 3\]",
                               timeout=WAIT_S)  # the survivor took every partition over
            time.sleep(max(0.0, stopped_at + ZOMBIE_STOP_S - time.monotonic()))
            resumed_at = time.time()
            os.kill(zombie.proc.pid, signal.SIGCONT)
            try:
                zombie.proc.wait(timeout=60)
                fenced = True
                break
            except Exception:  # it carried on: it held no transaction when it was stopped
                zombie.wait_for_log(RECOVERED, timeout=WAIT_S, count=3)
        assert fenced, "the zombie was never fenced"
        time.sleep(3.0)
        ids = feeder.stop()
    assert zombie.proc.returncode == 3, zombie.log_text()[-3000:]  # EXIT_FENCED
    log = zombie.log_text()
    assert "fenced" in log and "exiting" in log

    statuses = events.wait_finished(ids, timeout=WAIT_S)
    assert set(statuses.values()) == {"completed"}
    assert_exactly_once(events, ids)
    # Nothing the zombie produced once resumed is visible to a read_committed reader.
    visible = [s for s in stamped(settings, isolation="read_committed")
               if s[1] == "zombie" and s[2] >= resumed_at]  # fmt: skip
    assert visible == []


def _plan(rng: random.Random) -> dict[str, str]:
    point = rng.choice(KILL_POINTS)
    if point == "external":
        return {}
    at = rng.randint(1, 60) if point == "produce" else rng.randint(1, 12)
    return {"TEST_KILL_POINT": point, "TEST_KILL_AT": str(at)}


def test_sigkill_at_every_point_of_the_transaction_cycle(
    settings: Settings, flow: Deployment, events: EventLog, tmp_path: Path,
    spawn: Callable[..., Service],
) -> None:  # fmt: skip
    seed = int(os.environ.get("FOLDFLOW_CHAOS_SEED", str(random.randrange(10**6))))
    print(f"kill test: seed {seed}, {KILLS} kills")
    rng = random.Random(seed)
    spawn("worker", "worker", "--concurrency", "16")
    slots: dict[str, Service] = {}
    external: dict[str, float] = {}  # slot -> when the test SIGKILLs it
    started: list[Service] = []

    def start(slot: str, *, kill: bool) -> None:
        plan = _plan(rng) if kill else {}
        service = marked(settings, tmp_path, f"orchestrator-{slot}", instance=f"kill-{slot}",
                         env=plan)  # fmt: skip
        started.append(service)
        slots[slot] = service
        if kill and not plan:
            external[slot] = time.monotonic() + rng.uniform(3.0, 8.0)

    kills: Counter[str] = Counter()
    try:
        with Feeder(flow, per_second=10) as feeder:
            for slot in ("a", "b"):
                start(slot, kill=True)
            deadline = time.monotonic() + KILLS * 30
            while sum(kills.values()) < KILLS:
                assert time.monotonic() < deadline, f"only {dict(kills)} kills"
                for slot, service in list(slots.items()):
                    assert service.proc is not None
                    due = external.get(slot)
                    if due is not None and time.monotonic() >= due and service.proc.poll() is None:
                        del external[slot]
                        service.kill()
                        kills["external"] += 1
                        start(slot, kill=sum(kills.values()) < KILLS)
                        continue
                    code = service.proc.poll()
                    if code is None:
                        continue
                    assert code == -signal.SIGKILL, service.log_text()[-3000:]
                    point = service.extra_env.get("TEST_KILL_POINT", "?")
                    kills[point] += 1
                    start(slot, kill=sum(kills.values()) < KILLS)
                time.sleep(0.1)
            time.sleep(5.0)
            ids = feeder.stop()
        print(f"kills by point: {dict(kills)}; {len(ids)} workflows")
        statuses = events.wait_finished(ids, timeout=WAIT_S)
        assert set(statuses.values()) == {"completed"}
        assert_exactly_once(events, ids)
        assert len(kills) >= 3  # several points of the cycle were hit
    finally:
        for service in started:
            if service.proc is not None and service.proc.poll() is None:
                service.stop()


def test_scaling_one_to_three_to_one_under_load(
    settings: Settings, flow: Deployment, events: EventLog, spawn: Callable[..., Service],
) -> None:  # fmt: skip
    spawn("worker", "worker", "--concurrency", "16")
    first = spawn("orchestrator-1", "orchestrator")
    first.wait_for_log(RECOVERED, timeout=STARTUP_S)
    with Feeder(flow, per_second=10) as feeder:
        time.sleep(3.0)
        second = spawn("orchestrator-2", "orchestrator")
        third = spawn("orchestrator-3", "orchestrator")
        for service in (second, third):  # each got a share, mid-load
            service.wait_for_log(r"recovered \d+ workflows on partitions \[\d", timeout=WAIT_S)
        time.sleep(5.0)
        assert third.stop() == 0  # graceful: commits on revoke, leaves the group
        time.sleep(3.0)
        assert second.stop() == 0
        first.wait_for_log(r"recovered \d+ workflows on partitions \[0, 1, 2, 3\]",
                           timeout=WAIT_S)  # fmt: skip
        time.sleep(3.0)
        ids = feeder.stop()
    statuses = events.wait_finished(ids, timeout=WAIT_S)
    assert set(statuses.values()) == {"completed"}
    assert_exactly_once(events, ids)

