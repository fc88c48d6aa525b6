"""Drive a scaled-out Foldflow: `foldflow up` with several instances of every service
(on a local Kafka cluster or not), load that records what was acked or accepted, and
chaos that SIGKILLs instances. :mod:`foldflow.bench.logcheck` compares the outcome with what the
logs and PostgreSQL hold.

Shared by the chaos tests (``tests/chaos/test_broker_cluster.py``,
``tests/chaos/test_many_instances.py``) and the soak (:mod:`foldflow.bench.soak`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import psycopg
from confluent_kafka.admin import AdminClient
from psycopg import sql
from sqlalchemy import make_url

from foldflow.bench.logcheck import Ack
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher, PublishError
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    Envelope,
    StartWorkflow,
    derived_id,
    dump_json,
)
from foldflow.settings import Settings
from foldflow.topics import Topology

REPO = Path(__file__).resolve().parents[1]


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


#: Listening ports come from below the kernel's ephemeral range (32768+ on Linux): a
#: broker restarted on a port an outgoing connection took meanwhile could not bind it.
PORT_RANGE = (20000, 32000)


def free_ports(count: int, *, stride: int = 1, rng: random.Random | None = None) -> int:
    """A base port p such that p, p + stride, ..., p + stride·(count-1) are all free."""
    rng = rng or random.Random()
    low, high = PORT_RANGE
    for _ in range(500):
        base = rng.randrange(low, high - stride * count)
        if all(_free(base + stride * k) for k in range(count)):
            return base
    raise RuntimeError(f"no {count} free ports {stride} apart in {low}-{high}")


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


@contextlib.contextmanager
def scratch_database(base_url: str, *, prefix: str = "foldflow_t") -> Iterator[str]:
    """A fresh database owned by the URL's role (it needs CREATEDB, which `foldflow stack
    up` grants), migrated by whoever uses it; dropped afterwards."""
    url = make_url(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    owner = url.username or "foldflow"
    conninfo = (f"host={url.host or '127.0.0.1'} port={url.port or 5432} user={owner} "
                f"password={url.password or ''} dbname={url.database}")  # fmt: skip
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


def delete_topics_and_groups(settings: Settings, prefix: str) -> None:
    """Remove what a deployment left on the broker (every name carries ``prefix``)."""
    admin = AdminClient(kafka_config(settings))
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


class _PacedLoad:
    """``threads`` threads that each take the next number ``n`` when its moment
    (``n / rate`` seconds after :meth:`start`) has come; ``_run`` is the thread body."""

    def __init__(self, *, rate: float, threads: int, name: str) -> None:
        self.rate = rate
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started_at = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"{name}-{i}")
                         for i in range(threads)]  # fmt: skip

    def start(self) -> Self:
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
        raise NotImplementedError

    def _join(self, timeout: float) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)


class AckedStarts(_PacedLoad):
    """Starts workflows at ``rate`` per second from ``threads`` producer threads and
    records the partition and offset of every ack (and every start that was not acked)."""

    def __init__(self, settings: Settings, *, rate: float, threads: int = 8) -> None:
        super().__init__(rate=rate, threads=threads, name="load")
        self.topic = Topology.of(settings).commands
        self.publisher = Publisher(settings, source="test-load")
        self.acked: dict[str, Ack] = {}
        self.failed: list[str] = []

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
        self._join(60)
        self.publisher.close()


class GatewayStarts(_PacedLoad):
    """Starts workflows through the gateways at ``rate`` per second, like a client behind a
    load balancer: an ``Idempotency-Key`` per workflow, a retry on another gateway after a
    refused connection or a 5xx, until a 202 (``accepted``) or ``give_up_s``."""

    def __init__(
        self, urls: list[str], api_key: str, *, rate: float, threads: int = 8,
        give_up_s: float = 90.0,
    ) -> None:  # fmt: skip
        super().__init__(rate=rate, threads=threads, name="http")
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.give_up_s = give_up_s
        self.accepted: dict[str, float] = {}  # workflow id -> seconds from load start
        self.began_ms: dict[str, float] = {}  # workflow id -> wall time its first POST began
        self.latency: dict[str, float] = {}  # workflow id -> time to its 202
        self.gave_up: list[str] = []
        self.retries = 0
        self.statuses: Counter[int | str] = Counter()

    def _run(self) -> None:
        with httpx.Client(timeout=15.0, headers=self.headers) as client:
            while (n := self._take()) is not None:
                self._one(client, n)

    def _one(self, client: httpx.Client, n: int) -> None:
        key = f"scale-{uuid.uuid4().hex}"
        body = {"definition": CHAIN_NAME, "input": {"n": n}}
        began, began_ms = time.monotonic(), time.time() * 1000
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
                    self.began_ms[wf] = began_ms
                    self.latency[wf] = time.monotonic() - began
                return
            with self._lock:
                self.retries += 1
            time.sleep(0.2)
        with self._lock:
            self.gave_up.append(key)

    def stop(self) -> None:
        self._join(self.give_up_s + 30)


@dataclass
class Chaos:
    """SIGKILLs a random running instance of any service every ``every`` seconds; a
    supervisor (`foldflow scale <service>=<n>`, which starts what is missing) brings each
    one back a second later, trying again while it fails. Kills do not wait for restarts
    (several instances may be down at once), but an instance is not killed again while
    its supervisor is still bringing it back."""

    deployment: UpDeployment
    counts: dict[str, int]  # instances of each service the deployment runs
    every: float
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    kills: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _restarting: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Chaos:
        self._threads.append(threading.Thread(target=self._run, daemon=True, name="chaos"))
        self._threads[-1].start()
        return self

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.every):
            with self._lock:
                alive = sorted(set(self.deployment.pids()) - self._restarting)
            if not alive:
                continue
            victim = self.rng.choice(alive)
            with self._lock:
                self._restarting.add(victim)
            self.deployment.kill(victim)
            self.kills.append((round(time.monotonic() - began, 1), victim))
            restart = threading.Thread(target=self._restart, args=(victim,), daemon=True)
            restart.start()
            self._threads.append(restart)

    def _restart(self, victim: str) -> None:
        kind = victim.split("-")[0]
        failures = []
        for _ in range(3):
            time.sleep(1.0)
            done = self.deployment.foldflow("scale", f"{kind}={self.counts[kind]}", timeout=300)
            if done.returncode == 0:
                break
            failures.append(f"{done.stdout[-2000:]}{done.stderr[-1000:]}")
        else:
            self.errors.append(f"scale {kind} failed 3 times:\n" + "\n".join(failures))
        with self._lock:
            self._restarting.discard(victim)

    def stop(self) -> None:
        """Stop killing; wait until every restart is done."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1000)


def keep_logs(deployment: UpDeployment, where: Path) -> Path:
    """Copy the deployment's logs to ``where`` (pytest's tmp dirs do not last)."""
    import shutil

    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(deployment.state_dir / "logs", where)
    return where
