"""How fast a SIGKILLed worker's tasks run elsewhere, per consumer-group option.

``python -m foldflow.bench.failover [--option NAME ...] [--trials N]`` runs, for each option, real
worker processes (``Worker`` with that option's librdkafka settings) on a private topic
set of the configured broker, feeds ``builtin.sleep`` commands at a steady rate, SIGKILLs
one worker and measures the seconds from the kill to the first completed task of the
dead worker's partitions (a redelivered one, or a new one sent there), twice per trial:
with the dead worker restarted at once (as ``foldflow up`` or a supervisor does) and with
no restart (the survivor must take over). Prints a table; ``--json`` for the figures.

Options: ``classic-45s`` (librdkafka's defaults, the old worker), ``classic-6s`` (short
session timeout), ``static-45s`` / ``static-6s`` (``group.instance.id``, stable across a
restart), ``consumer`` (KIP-848, ``group.protocol=consumer``: the session timeout is the
broker's ``group.consumer.session.timeout.ms``), ``consumer-static``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from foldflow.admin import ensure_topics
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import Envelope, ExecuteTask, dump_json, task_id
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["OPTIONS", "main", "measure"]

TASK_TYPE = "builtin.sleep"
PARTITIONS = 6
RATE_PER_S = 40.0
TASK_SECONDS = 0.2
GIVE_UP_S = 90.0

_SHORT = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1500}
OPTIONS: dict[str, dict[str, Any]] = {
    "classic-45s": {},
    "classic-6s": {**_SHORT},
    "static-45s": {"group.instance.id": "{member}"},
    "static-6s": {**_SHORT, "group.instance.id": "{member}"},
    "consumer": {"group.protocol": "consumer"},
    "consumer-static": {"group.protocol": "consumer", "group.instance.id": "{member}"},
}


def _worker_main(options: str, member: str) -> None:
    """A worker process: serve ``builtin.sleep`` with the option's consumer settings."""
    from foldflow.observability.logging import configure_logging
    from foldflow.workers.builtin import registry
    from foldflow.workers.runtime import Worker

    settings = Settings()
    configure_logging(settings, service="worker")
    overrides = {k: (v.format(member=member) if isinstance(v, str) else v)
                 for k, v in OPTIONS[options].items()}
    overrides["client.id"] = member
    Worker(settings, registry, task_types=(TASK_TYPE,), concurrency=16,
           consumer_config=overrides).run()


@dataclass
class _Feed:
    """Sends commands at a steady rate; remembers each one's partition and send time."""

    settings: Settings
    sent: dict[str, tuple[int, float]] = field(default_factory=dict)  # task id -> (p, t)
    done: dict[str, float] = field(default_factory=dict)  # task id -> when a worker finished
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_loop(self) -> None:
        topology = Topology.of(self.settings)
        with Publisher(self.settings, source="failover") as publisher:
            n = 0
            next_at = time.monotonic()
            while not self.stop.is_set():
                wf = f"wf-{n}"
                tid = task_id(wf, "s", 1)
                command = Envelope(
                    event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000),
                    source="failover", correlation_id=wf, workflow_id=wf,
                    payload=ExecuteTask(tid, TASK_TYPE, "s", 1, "step",
                                        dump_json({"seconds": TASK_SECONDS}), 30_000),
                )  # fmt: skip
                msg = publisher.publish(topology.task(TASK_TYPE), command)
                with self.lock:
                    self.sent[tid] = (msg.partition() or 0, time.monotonic())
                n += 1
                next_at += 1 / RATE_PER_S
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def read_loop(self) -> None:
        consumer = Consumer(kafka_config(self.settings, {
                             "group.id": f"failover-{uuid.uuid4().hex[:8]}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False}))
        consumer.subscribe([Topology.of(self.settings).results])
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(500, 0.1):
                    if msg.error() is None:
                        result = decode(msg.value() or b"")
                        with self.lock:  # the result's timestamp: when the worker made it
                            self.done.setdefault(getattr(result.payload, "task_id", ""),
                                                 result.timestamp / 1000)
        finally:
            consumer.close()


def _assigned(admin: AdminClient, group: str, member: str) -> set[int]:
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return {tp.partition for m in described.members if m.client_id == member
            for tp in (m.assignment.topic_partitions if m.assignment else [])}


def _start(option: str, member: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
           "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "FOLDFLOW_PARTITIONS": str(settings.partitions), "FOLDFLOW_METRICS_PORT": "0"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "foldflow.bench.failover", "--worker", option, member],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def measure(option: str, *, restart: bool, base: Settings, logs: Path) -> float | None:
    """Seconds from SIGKILL to the first task of the dead worker's partitions completed by
    another process (by the result's timestamp: worker and bench share the clock)."""
    settings = base.model_copy(update={"topic_prefix": f"fo-{uuid.uuid4().hex[:8]}.",
                                       "partitions": PARTITIONS})
    ensure_topics(settings, task_types=(TASK_TYPE,))
    admin = AdminClient(kafka_config(settings))
    group = Topology.of(settings).worker_group(TASK_TYPE)
    procs: list[subprocess.Popen[bytes]] = []
    feed = _Feed(settings)
    threads = [threading.Thread(target=feed.send_loop, daemon=True),
               threading.Thread(target=feed.read_loop, daemon=True)]
    try:
        victim = f"w-a-{uuid.uuid4().hex[:4]}"
        procs.append(_start(option, victim, settings, logs / f"{option}-{victim}.log"))
        procs.append(_start(option, "w-b", settings, logs / f"{option}-w-b.log"))
        for t in threads:
            t.start()
        mine = _wait(lambda: _assigned(admin, group, victim) if len(
            _assigned(admin, group, "w-b")) else None, 120, "both workers assigned")
        time.sleep(5)  # steady state
        killed = time.time()  # results made after this come from another process
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        if restart:
            procs.append(_start(option, victim, settings, logs / f"{option}-{victim}.log"))

        def first() -> float | None:
            with feed.lock:
                late = [feed.done[t] for t, (p, _) in feed.sent.items()
                        if p in mine and t in feed.done and feed.done[t] > killed]
            return min(late) - killed if late else None

        try:
            return float(_wait(first, GIVE_UP_S, "a task of the dead worker's partitions"))
        except TimeoutError:
            return None
    finally:
        feed.stop.set()
        for t in threads:
            if t.is_alive():
                t.join(10)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        topics = [t for t in admin.list_topics(timeout=10).topics
                  if t.startswith(settings.topic_prefix)]
        if topics:
            admin.delete_topics(topics, operation_timeout=30)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every option (or those given) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--option", action="append", choices=sorted(OPTIONS))
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--logs", type=Path, default=Path(".foldflow/failover"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main(*args.worker)
        return
    args.logs.mkdir(parents=True, exist_ok=True)
    base = Settings()
    figures: dict[str, dict[str, list[float | None]]] = {}
    for option in args.option or list(OPTIONS):
        for restart in (True, False):
            key = "restarted" if restart else "not restarted"
            for _ in range(args.trials):
                seconds = measure(option, restart=restart, base=base, logs=args.logs)
                figures.setdefault(option, {}).setdefault(key, []).append(seconds)
                shown = f"> {GIVE_UP_S:.0f}" if seconds is None else f"{seconds:5.1f}"
                print(f"{option:16} {key:14} {shown} s", flush=True)
    if args.json:
        print(json.dumps(figures))
    for option, by_mode in figures.items():
        for mode, values in by_mode.items():
            known = [v for v in values if v is not None]
            median = f"{statistics.median(known):5.1f}" if known else "  n/a"
            print(f"{option:16} {mode:14} median {median} s  {values}")


if __name__ == "__main__":
    main()
