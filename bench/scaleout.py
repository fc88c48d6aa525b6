"""Drive a scaled-out Foldflow: `foldflow up` with several instances of every service,
a local Kafka cluster, load that records what was acked, chaos that SIGKILLs instances,
and the checks that compare what was accepted with what the logs and PostgreSQL hold.

Shared by the chaos tests (``tests/chaos/test_broker_cluster.py``,
``tests/chaos/test_many_instances.py``) and the soak (:mod:`bench.soak`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

from bench.watchers import header
from foldflow.settings import Settings
from foldflow.topics import Topology
from producers import Publisher, PublishError
from schemas.codec import decode, encode
from schemas.messages import (
    DEFAULT_TENANT,
    Envelope,
    StartWorkflow,
    StepCompleted,
    derived_id,
    dump_json,
)

REPO = Path(__file__).resolve().parents[1]

#: librdkafka's own lines ("Connect to ... failed" while a broker is down) go nowhere.
QUIET = logging.getLogger("scale-tests.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

TERMINAL = {
    "workflow.completed.v1": "completed",
    "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation_failed",
    "workflow.cancelled.v1": "cancelled",
    "workflow.terminated.v1": "terminated",
}

#: Three steps: a task, a short sleep task (keeps workflows in flight), a task.
CHAIN_NAME = "scale-chain"
CHAIN: dict[str, Any] = {
    "name": CHAIN_NAME,
    "steps": [
        {"id": "a", "task": "builtin.echo", "input": {"n": "${input.n}"}},
        {"id": "b", "task": "builtin.sleep", "after": ["a"], "input": {"seconds": 0.2}},
        {"id": "c", "task": "builtin.echo", "after": ["b"], "input": {"done": True}},
    ],
}


# --------------------------------------------------------------------------- ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, stride: int = 1) -> int:
    """A base port p such that p, p + stride, ..., p + stride·(count-1) are all free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + stride * count < 65000 and all(
            _free(base + stride * k) for k in range(count)
        ):
            return base
    raise RuntimeError(f"no {count} free ports {stride} apart")


# --------------------------------------------------------------------------- the CLI


@dataclass
class UpDeployment:
    """A private deployment run by the `foldflow` CLI: its own state dir, topic prefix,
    database and ports (on the Kafka ``env`` names)."""

    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return Path(self.env["FOLDFLOW_STATE_DIR"])

    @classmethod
    def create(
        cls, *, kafka_bootstrap: str, database_url: str, state_dir: Path, gateways: int = 3,
        extra: dict[str, str] | None = None,
    ) -> UpDeployment:  # fmt: skip
        """Environment for a deployment of up to 9 instances per service on free ports."""
        env = {
            **os.environ,
            "COLUMNS": "200",
            "FOLDFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "FOLDFLOW_DATABASE_URL": database_url,
            "FOLDFLOW_TOPIC_PREFIX": f"t-{uuid.uuid4().hex[:8]}.",
            "FOLDFLOW_STATE_DIR": str(state_dir),
            "FOLDFLOW_GATEWAY_PORT": str(free_ports(gateways)),
            "FOLDFLOW_SERVICE_STOP_GRACE": "15",
            "FOLDFLOW_GATEWAY_RATE_LIMIT": "10000/second",
            **(extra or {}),
        }
        for kind in ("orchestrator", "worker", "projector"):
            env[f"FOLDFLOW_{kind.upper()}_METRICS_PORT"] = str(free_ports(9, stride=10))
        return cls(env)

    def settings(self) -> Settings:
        """The deployment's settings, as its processes see them."""
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            kafka_bootstrap=self.env["FOLDFLOW_KAFKA_BOOTSTRAP"],
            database_url=self.env["FOLDFLOW_DATABASE_URL"],
            topic_prefix=self.env["FOLDFLOW_TOPIC_PREFIX"],
            state_dir=self.state_dir,
            partitions=int(self.env.get("FOLDFLOW_PARTITIONS", "6")),
        )

    def foldflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``foldflow ARGS`` with this deployment's environment."""
        return subprocess.run(
            [sys.executable, "-m", "foldflow.cli.main", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def must(self, *args: str, timeout: float = 300) -> str:
        """Run ``foldflow ARGS``; fail the test with its output unless it exits 0."""
        done = self.foldflow(*args, timeout=timeout)
        assert done.returncode == 0, f"foldflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def pids(self) -> dict[str, int]:
        """``{instance name: pid}`` of every pid file."""
        found = {}
        for path in (self.state_dir / "pids").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                found[path.stem] = int(path.read_text().strip())
        return found

    def kill(self, name: str) -> int:
        """SIGKILL an instance (its whole process group); return the pid."""
        pid = self.pids()[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return pid

    @property
    def api_key(self) -> str:
        return (self.state_dir / "api-key").read_text().strip()

    def gateway_urls(self, count: int) -> list[str]:
        base = int(self.env["FOLDFLOW_GATEWAY_PORT"])
        return [f"http://127.0.0.1:{base + k}" for k in range(count)]

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every instance's log (for a failure message)."""
        out = []
        for log in sorted((self.state_dir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(line[:400] for line in tail))
        return "\n".join(out)


def delete_topics_and_groups(bootstrap: str, prefix: str) -> None:
    """Remove what a deployment left on the broker (every name carries ``prefix``)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=60).values():
            with contextlib.suppress(Exception):
                future.result()
    groups = [g.group_id for g in admin.list_consumer_groups().result().valid
              if g.group_id.startswith(prefix)]  # fmt: skip
    if groups:
        for future in admin.delete_consumer_groups(groups).values():
            with contextlib.suppress(Exception):
                future.result()


# --------------------------------------------------------------------------- load


def start_envelope(workflow_id: str, n: int) -> Envelope:
    """The ``workflow.start.v1`` of one scale-chain workflow (as the gateway builds it)."""
    return Envelope(
        event_id=derived_id(workflow_id, 0), timestamp=int(time.time() * 1000), source="test",
        correlation_id=f"corr-{workflow_id}", workflow_id=workflow_id,
        payload=StartWorkflow(definition_name=CHAIN_NAME, definition_version=None,
                              input_json=dump_json({"n": n}), tenant=DEFAULT_TENANT),
        tenant=DEFAULT_TENANT,
    )  # fmt: skip


@dataclass(frozen=True)
class Ack:
    """Where the broker said it stored a record."""

    partition: int
    offset: int
    key: str
    event_id: str


class AckedStarts:
    """Starts workflows at ``rate`` per second from ``threads`` producer threads and
    records the partition and offset of every ack (and every start that was not acked)."""

    def __init__(self, settings: Settings, *, rate: float, threads: int = 8) -> None:
        self.topic = Topology.of(settings).commands
        self.publisher = Publisher(settings, source="test-load")
        self.rate = rate
        self.acked: dict[str, Ack] = {}
        self.failed: list[str] = []
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started_at = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(threads)]  # fmt: skip

    def start(self) -> AckedStarts:
        self._started_at = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._lock:
            n = self._next
            self._next += 1
        due = self._started_at + n / self.rate
        while not self._stop.is_set():
            wait = due - time.monotonic()
            if wait <= 0:
                return n
            self._stop.wait(min(wait, 0.2))
        return None

    def _run(self) -> None:
        while (n := self._take()) is not None:
            wf = f"wf-{uuid.uuid4().hex[:12]}"
            envelope = start_envelope(wf, n)
            try:
                msg = self.publisher.publish(self.topic, envelope)
            except PublishError:
                with self._lock:
                    self.failed.append(wf)
                continue
            with self._lock:
                self.acked[wf] = Ack(msg.partition() or 0, msg.offset() or 0, wf,
                                     envelope.event_id)  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.publisher.close()


class GatewayStarts:
    """Starts workflows through the gateways at ``rate`` per second, like a client behind a
    load balancer: an ``Idempotency-Key`` per workflow, a retry on another gateway after a
    refused connection or a 5xx, until a 202 (``accepted``) or ``give_up_s``."""

    def __init__(
        self, urls: list[str], api_key: str, *, rate: float, threads: int = 8,
        give_up_s: float = 90.0,
    ) -> None:  # fmt: skip
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.rate = rate
        self.give_up_s = give_up_s
        self.accepted: dict[str, float] = {}  # workflow id -> seconds from load start
        self.latency: dict[str, float] = {}  # workflow id -> time to its 202
        self.gave_up: list[str] = []
        self.retries = 0
        self.statuses: Counter[int | str] = Counter()
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started_at = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"http-{i}")
                         for i in range(threads)]  # fmt: skip

    def start(self) -> GatewayStarts:
        self._started_at = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._lock:
            n = self._next
            self._next += 1
        due = self._started_at + n / self.rate
        while not self._stop.is_set():
            wait = due - time.monotonic()
            if wait <= 0:
                return n
            self._stop.wait(min(wait, 0.2))
        return None

    def _run(self) -> None:
        with httpx.Client(timeout=15.0, headers=self.headers) as client:
            while (n := self._take()) is not None:
                self._one(client, n)

    def _one(self, client: httpx.Client, n: int) -> None:
        key = f"scale-{uuid.uuid4().hex}"
        body = {"definition": CHAIN_NAME, "input": {"n": n}}
        began = time.monotonic()
        attempt = 0
        while time.monotonic() - began < self.give_up_s:
            url = self.urls[(n + attempt) % len(self.urls)]
            attempt += 1
            try:
                response = client.post(f"{url}/v1/workflows", json=body,
                                       headers={"Idempotency-Key": key})  # fmt: skip
                status: int | str = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                response = None
            with self._lock:
                self.statuses[status] += 1
            if response is not None and response.status_code == 202:
                with self._lock:
                    wf = response.json()["id"]
                    self.accepted[wf] = began - self._started_at
                    self.latency[wf] = time.monotonic() - began
                return
            with self._lock:
                self.retries += 1
            time.sleep(0.2)
        with self._lock:
            self.gave_up.append(key)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.give_up_s + 30)


# --------------------------------------------------------------------------- reading logs


@dataclass
class LogRecord:
    """One record as read back from the log."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    event_type: str  # the header every Foldflow producer sets


def read_topics(bootstrap: str, topics: Iterable[str], *, timeout: float = 60.0) -> list[LogRecord]:
    """Every committed record of ``topics`` from the beginning to their current end."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
        "logger": QUIET,
        "enable.auto.commit": False, "enable.partition.eof": False,
        "isolation.level": "read_committed",
    })  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=30)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in metadata.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if high > low:
                    ends[(topic, p)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        records: list[LogRecord] = []
        deadline = time.monotonic() + timeout
        pending = dict(ends)
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                tp = (msg.topic() or "", msg.partition() or 0)
                offset = msg.offset() or 0
                event_type = header(msg, "event_type") or b""
                records.append(LogRecord(
                    tp[0], tp[1], offset, (msg.key() or b"").decode(), msg.value() or b"",
                    event_type.decode(),
                ))  # fmt: skip
                if tp in pending and offset + 1 >= pending[tp]:
                    del pending[tp]
            # transaction markers take the last offsets: the position says we are done
            for tp in list(pending):
                [pos] = consumer.position([TopicPartition(*tp)])
                if pos.offset >= pending[tp]:
                    del pending[tp]
        assert not pending, f"could not read to the end of {sorted(pending)}"
        return records
    finally:
        consumer.close()


def histories(records: Iterable[LogRecord]) -> dict[str, list[Envelope]]:
    """The events of each workflow in log order (``records`` of ``wf.events``)."""
    out: dict[str, list[Envelope]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode(record.value)
        out[event.workflow_id].append(event)
    return out


def status_of(events: list[Envelope]) -> str | None:
    """The terminal status a history ends in (None: not finished)."""
    for event in reversed(events):
        if event.event_type in TERMINAL:
            return TERMINAL[event.event_type]
    return None


def log_problems(by_workflow: dict[str, list[Envelope]], ids: Iterable[str]) -> list[str]:
    """What breaks "every workflow ends exactly once": sequences not contiguous from 1,
    one sequence with two contents, a step completed twice, not exactly one ending."""
    problems = []
    for wf in ids:
        first: dict[int, bytes] = {}
        events = by_workflow.get(wf, [])
        for event in events:
            body = encode(event)
            if first.setdefault(event.sequence or 0, body) != body:
                problems.append(f"{wf}: sequence {event.sequence} with two contents")
        if sorted(first) != list(range(1, len(first) + 1)):
            problems.append(f"{wf}: sequences {sorted(first)}")
        unique = {e.sequence: e for e in events}
        steps = [e.payload.step_id for e in unique.values() if isinstance(e.payload, StepCompleted)]
        if len(steps) != len(set(steps)):
            problems.append(f"{wf}: a step completed twice ({sorted(steps)})")
        endings = [e.event_type for e in unique.values() if e.event_type in TERMINAL]
        if endings != ["workflow.completed.v1"]:
            problems.append(f"{wf}: endings {endings}")
    return problems


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, every: float = 1.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds. A
    Kafka error counts as "not yet" (the cluster is expected to be in trouble)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except KafkaException as exc:  # a metadata request to a broker just killed
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last error: {last})")
        time.sleep(every)


def finished(bootstrap: str, events_topic: str, ids: set[str]) -> Callable[[], bool]:
    """A check: every workflow of ``ids`` has a terminal event in ``events_topic``."""

    def check() -> bool:
        ended = {r.key for r in read_topics(bootstrap, [events_topic]) if r.event_type in TERMINAL}
        return ids <= ended

    return check


def projection_differences(
    engine: Engine, by_workflow: dict[str, list[Envelope]], ids: Iterable[str]
) -> list[str]:
    """Where PostgreSQL differs from ``wf.events`` for ``ids``: every (sequence, event id,
    type) of each history, the instance's status and last sequence."""
    ids = list(ids)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT workflow_id, sequence, event_id, event_type FROM workflow_events "
                 "WHERE workflow_id = ANY(:ids)"), {"ids": ids},
        ).all()  # fmt: skip
        instances = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                text("SELECT id, status, last_sequence FROM workflow_instances "
                     "WHERE id = ANY(:ids)"), {"ids": ids},
            )
        }  # fmt: skip
    projected: dict[str, set[tuple[int, str, str]]] = defaultdict(set)
    for wf, seq, event_id, event_type in rows:
        projected[wf].add((int(seq), event_id, event_type))
    problems = []
    for wf in ids:
        logged = {(e.sequence or 0, e.event_id, e.event_type) for e in by_workflow.get(wf, [])}
        if projected.get(wf, set()) != logged:
            problems.append(f"{wf}: PostgreSQL has {len(projected.get(wf, ()))} events, "
                            f"wf.events {len(logged)}")  # fmt: skip
        status = status_of(by_workflow.get(wf, []))
        if instances.get(wf) != (status, len(logged)):
            problems.append(f"{wf}: instance row {instances.get(wf)}, log says "
                            f"{(status, len(logged))}")  # fmt: skip
    return problems


@dataclass
class Chaos:
    """SIGKILLs a random instance of any service every ``every`` seconds; a supervisor
    (`foldflow scale <service>=<n>`, which starts what is missing) brings each one back a
    second later. Kills do not wait for restarts: several instances may be down at once."""

    deployment: UpDeployment
    counts: dict[str, int]  # instances of each service the deployment runs
    every: float
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    kills: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Chaos:
        self._threads.append(threading.Thread(target=self._run, daemon=True, name="chaos"))
        self._threads[-1].start()
        return self

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.every):
            alive = sorted(self.deployment.pids())
            if not alive:
                continue
            victim = self.rng.choice(alive)
            self.deployment.kill(victim)
            self.kills.append((round(time.monotonic() - began, 1), victim))
            kind = victim.split("-")[0]
            restart = threading.Thread(target=self._restart, args=(kind,), daemon=True)
            restart.start()
            self._threads.append(restart)

    def _restart(self, kind: str) -> None:
        time.sleep(1.0)
        done = self.deployment.foldflow("scale", f"{kind}={self.counts[kind]}", timeout=300)
        if done.returncode != 0:
            self.errors.append(f"scale {kind}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")

    def stop(self) -> None:
        """Stop killing; wait until every restart is done."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=400)


# --------------------------------------------------------------------------- a cluster


def leaders(admin: AdminClient, topics: Iterable[str]) -> Counter[int]:
    """How many partitions of ``topics`` each broker leads."""
    metadata = admin.list_topics(timeout=10)
    return Counter(
        p.leader for t in topics for p in metadata.topics[t].partitions.values() if p.leader >= 0
    )


def under_replicated(admin: AdminClient, topics: Iterable[str], replicas: int) -> list[str]:
    """The partitions of ``topics`` whose in-sync replicas are fewer than ``replicas`` (or
    that have no leader)."""
    metadata = admin.list_topics(timeout=10)
    return [
        f"{t}[{p.id}] isr={sorted(p.isrs)} leader={p.leader}"
        for t in topics
        for p in metadata.topics[t].partitions.values()
        if len(p.isrs) < replicas or p.leader < 0
    ]


class LiveTail:
    """Reads ``topics`` (read_committed) from the beginning while the test runs and keeps
    every record it saw: a record a consumer saw was acked by every in-sync replica, so
    it must still be at the same offset, unchanged, when the test reads the log again."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.seen: dict[tuple[str, int, int], tuple[str, bytes]] = {}
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"test-tail-{uuid.uuid4().hex[:8]}",
            "logger": QUIET,
            "enable.auto.commit": False, "enable.partition.eof": False,
            "isolation.level": "read_committed",
        })  # fmt: skip
        metadata = self._consumer.list_topics(timeout=30)
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                               for p in metadata.topics[t].partitions])  # fmt: skip
        self._thread = threading.Thread(target=self._run, daemon=True, name="tail")

    def start(self) -> LiveTail:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is None:
                    where = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                    self.seen[where] = ((msg.key() or b"").decode(), msg.value() or b"")

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()


def lost(
    acks: Iterable[Ack], seen: dict[tuple[str, int, int], tuple[str, bytes]],
    records: Iterable[LogRecord], commands_topic: str,
) -> list[str]:
    """Acked or once-seen records the log no longer holds where the broker put them."""
    log = {(r.topic, r.partition, r.offset): (r.key, r.value) for r in records}
    missing = []
    for ack in acks:
        found = log.get((commands_topic, ack.partition, ack.offset))
        if found is None or found[0] != ack.key or decode(found[1]).event_id != ack.event_id:
            missing.append(f"acked {ack} holds {found and found[0]}")
    for where, record in seen.items():
        if log.get(where) != record:
            missing.append(f"seen {where} key {record[0]} is now {log.get(where, (None,))[0]}")
    return missing
