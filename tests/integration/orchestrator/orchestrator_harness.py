"""Drive a private Foldflow deployment from a test: real processes, real Kafka.

:class:`Deployment` publishes definitions and commands under one topic prefix and reads
``wf.events`` back; :class:`Service` runs ``foldflow run orchestrator|worker`` as a
subprocess (SIGTERM and SIGKILL reach the real process). Shared by the orchestrator
integration tests and the chaos tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from foldflow.admin import ensure_topics
from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.codec import decode, encode
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    CancelWorkflow,
    DefinitionRegistered,
    Envelope,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepCompleted,
    TerminateWorkflow,
    definition_key,
    dump_json,
)
from foldflow.settings import Settings
from foldflow.topics import Topology

REPO = Path(__file__).resolve().parents[3]
FOLDFLOW = REPO / ".venv" / "bin" / "foldflow"
EXAMPLES = REPO / "examples"

TERMINAL_EVENTS = {
    "workflow.completed.v1": "completed",
    "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation_failed",
    "workflow.cancelled.v1": "cancelled",
    "workflow.terminated.v1": "terminated",
}

__all__ = [
    "EXAMPLES",
    "STARTUP_S",
    "TERMINAL_EVENTS",
    "TEST_DEFINITIONS",
    "CancelWorkflow",
    "Deployment",
    "EventLog",
    "PauseWorkflow",
    "ResumeWorkflow",
    "Service",
    "SignalWorkflow",
    "TerminateWorkflow",
    "assert_log_invariants",
    "delete_private_topics",
    "private_settings",
    "register_all",
    "status_of",
]


def json_lines(text: str) -> list[str]:
    """The log lines that must be JSON: all but empty ones and librdkafka's own.

    librdkafka writes a few lines straight to stderr (``%6|<ts>|BGQUEUE|...`` when a
    client handle is torn down) that no Python logging configuration can catch.
    """
    return [line for line in text.splitlines() if line and not re.match(r"%\d\|", line)]


def status_of(events: list[Envelope]) -> str | None:
    """The terminal status an event history ends in (None: not finished)."""
    for event in reversed(events):
        if event.event_type in TERMINAL_EVENTS:
            return TERMINAL_EVENTS[event.event_type]
    return None


class Service:
    """A ``foldflow run <name>`` subprocess with its own environment and log file."""

    def __init__(
        self, name: str, settings: Settings, log_dir: Path, *, args: Iterable[str] = (),
        env: dict[str, str] | None = None, script: Path | None = None,
        instance: str | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.settings = settings
        self.args = list(args)
        self.script = script  # run this Python file instead of `foldflow run <args>`
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        #: FOLDFLOW_INSTANCE_ID: give a restarted service its predecessor's to reuse its
        #: transactional.id (as a supervisor restarting a pod does)
        self.instance = instance or self.log_path.stem
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._offset = 0

    def start(self) -> Service:
        """Start the process (stdout and stderr go to :attr:`log_path`)."""
        env = {
            **os.environ,
            "FOLDFLOW_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "FOLDFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            "FOLDFLOW_PARTITIONS": str(self.settings.partitions),
            "FOLDFLOW_METRICS_PORT": "0",
            "FOLDFLOW_INSTANCE_ID": self.instance,
            "FOLDFLOW_STATE_DIR": str(self.log_path.parent / "state"),
            "PYTHONPATH": str(REPO),
            **self.extra_env,
        }
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        command = ([sys.executable, str(self.script)] if self.script is not None
                   else [str(FOLDFLOW), "run", *self.args])  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def log_text(self) -> str:
        """What the process logged since its last start."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern: str, *, timeout: float, count: int = 1) -> None:
        """Wait until ``pattern`` (a regex) appears ``count`` times in the log since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log_text())) >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(
            f"{self.name}: no {pattern!r} within {timeout}s "
            f"(exit code {self.proc and self.proc.poll()}); log tail:\n{self.log_text()[-3000:]}"
        )

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit (SIGKILL after ``timeout``); return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s") from None
        finally:
            if self._log is not None:
                self._log.close()


class EventLog:
    """Reads ``wf.events`` of one deployment from the beginning, grouped by workflow."""

    def __init__(self, settings: Settings) -> None:
        topic = Topology.of(settings).events
        self._consumer = Consumer(kafka_config(settings, {
            "group.id": f"test-events-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",  # what every reader of the outputs sees
        }))  # fmt: skip
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )
        self.by_workflow: dict[str, list[Envelope]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, bytes]]] = defaultdict(list)

    def poll(self, seconds: float = 0.5) -> None:
        """Read whatever arrived within ``seconds``."""
        for msg in self._consumer.consume(num_messages=1000, timeout=seconds):
            if msg.error() is None:
                event = decode(msg.value())
                self.by_workflow[event.workflow_id].append(event)
                self.headers[event.workflow_id].append(dict(msg.headers() or []))

    def wait(
        self, condition: Callable[[EventLog], bool], *, timeout: float, what: str = "condition"
    ) -> None:
        """Poll until ``condition(self)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if condition(self):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout}s: {self.summary()}")

    def wait_finished(self, workflow_ids: Iterable[str], *, timeout: float) -> dict[str, str]:
        """Wait until every workflow reached a terminal event; return their statuses."""
        ids = list(workflow_ids)
        self.wait(
            lambda log: all(status_of(log.by_workflow.get(w, [])) for w in ids),
            timeout=timeout, what=f"terminal state of {len(ids)} workflows",
        )  # fmt: skip
        return {w: status_of(self.by_workflow[w]) or "" for w in ids}

    def types(self, workflow_id: str) -> list[str]:
        """The event types of one workflow, in log order."""
        return [e.event_type for e in self.by_workflow.get(workflow_id, [])]

    def summary(self) -> str:
        """One line per workflow: the last few event types (for failure messages)."""
        return "; ".join(
            f"{w}: {' '.join(t.rsplit('.', 1)[0] for t in self.types(w)[-4:])}"
            for w in sorted(self.by_workflow)
        )[-3000:]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


class Deployment:
    """Publishes definitions and commands to one private topic set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = Topology.of(settings)
        self.publisher = Publisher(settings, source="test")

    def _envelope(self, workflow_id: str, payload: Payload) -> Envelope:
        return Envelope(
            event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="test",
            correlation_id=f"corr-{workflow_id}", workflow_id=workflow_id, payload=payload,
            tenant="default",
        )  # fmt: skip

    def register(self, definition: Definition, *, tenant: str = DEFAULT_TENANT) -> None:
        """Publish ``definition.registered.v1`` for one definition version of ``tenant``."""
        key = definition_key(tenant, definition.name, definition.version)
        payload = DefinitionRegistered(
            name=definition.name, version=definition.version, tenant=tenant,
            definition_json=definition.canonical_json(),
        )  # fmt: skip
        self.publisher.publish(self.topology.definitions, self._envelope(key, payload), key=key)

    def start(
        self, name: str, input: object, *, workflow_id: str | None = None,
        version: int | None = None, headers: list[tuple[str, bytes]] | None = None,
    ) -> str:  # fmt: skip
        """Send ``workflow.start.v1``; return the workflow id."""
        wf = workflow_id or f"wf-{uuid.uuid4().hex[:12]}"
        payload = StartWorkflow(
            definition_name=name, definition_version=version, input_json=dump_json(input)
        )
        envelope = self._envelope(wf, payload)
        self.publisher.publish(self.topology.commands, envelope, headers=headers)
        return wf

    def command(self, workflow_id: str, payload: Payload) -> None:
        """Send any command to one workflow."""
        self.publisher.publish(self.topology.commands, self._envelope(workflow_id, payload))

    def close(self) -> None:
        """Flush and close the publisher."""
        self.publisher.close()


STARTUP_S = 90.0

#: Definitions the lifecycle tests use besides the examples.
TEST_DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "t-pause",
        "steps": [
            {"id": "a", "task": "builtin.echo", "input": {"n": 1}},
            {"id": "nap", "sleep": "1500ms", "after": ["a"]},
            {"id": "b", "task": "builtin.echo", "after": ["nap"], "input": {"n": 2}},
        ],
    },
    {
        "name": "t-wait",
        "steps": [
            {
                "id": "reserve",
                "task": "builtin.echo",
                "input": {"what": "stock"},
                "compensate": {"task": "builtin.echo", "input": {"undo": "stock"}},
            },
            {"id": "gate", "signal": "go", "after": ["reserve"], "timeout": "2m"},
            {"id": "finish", "task": "builtin.echo", "after": ["gate"], "input": {"n": 3}},
        ],
    },
    {
        "name": "t-child",
        "steps": [{"id": "only", "task": "builtin.echo", "input": {"child": "${input.x}"}}],
        "output": "${steps.only.output}",
    },
    {
        "name": "t-parent",
        "steps": [
            {"id": "prep", "task": "builtin.echo", "input": {"x": 7}},
            {"id": "kid", "workflow": "t-child", "after": ["prep"], "input": {"x": 7}},
            {"id": "done", "task": "builtin.echo", "after": ["kid"], "input": {"ok": True}},
        ],
    },
]


def private_settings(stack: Settings, *, partitions: int) -> Settings:
    """Settings with a topic prefix of their own; every topic created."""
    settings = Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=f"t-{uuid.uuid4().hex[:8]}.",
        partitions=partitions,
    )
    ensure_topics(settings)
    return settings


def delete_private_topics(settings: Settings) -> None:
    """Delete the topics of a private topic set (a broker with thousands of leftover test
    topics takes minutes to restart); ``FOLDFLOW_TEST_KEEP_TOPICS=1`` keeps them to look at."""
    from confluent_kafka.admin import AdminClient

    if os.environ.get("FOLDFLOW_TEST_KEEP_TOPICS"):
        print(f"keeping the topics {settings.topic_prefix}*")
        return
    admin = AdminClient(kafka_config(settings, {"log_level": 3}))
    names = [t for t in admin.list_topics(timeout=30).topics
             if t.startswith(settings.topic_prefix)]  # fmt: skip
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except Exception as exc:  # best effort: a leftover topic harms nothing
                print(f"could not delete a test topic: {exc}")


def register_all(deployment: Deployment) -> None:
    """Register the examples and the test definitions."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        deployment.register(Definition.load(path))
    for data in TEST_DEFINITIONS:
        deployment.register(Definition.from_data(data))


def assert_log_invariants(events: EventLog, workflow_ids: list[str]) -> None:
    """Sequences contiguous, duplicates identical, one completion per step, one ending."""
    for wf in workflow_ids:
        first: dict[int, bytes] = {}
        for event in events.by_workflow[wf]:
            assert event.sequence is not None
            body = encode(event)
            seen = first.setdefault(event.sequence, body)
            assert seen == body, f"{wf}: sequence {event.sequence} emitted with two contents"
        assert sorted(first) == list(range(1, len(first) + 1)), f"{wf}: gap in {sorted(first)}"
        unique = {e.sequence: e for e in events.by_workflow[wf]}
        completed = [
            e.payload.step_id for e in unique.values() if isinstance(e.payload, StepCompleted)
        ]
        assert len(completed) == len(set(completed)), f"{wf}: a step completed twice"
        endings = [e for e in unique.values() if e.event_type in TERMINAL_EVENTS]
        assert len(endings) == 1, f"{wf}: {len(endings)} terminal events"
