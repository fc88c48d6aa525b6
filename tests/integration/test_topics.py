"""`foldflow topics ensure` against the real broker (each test under its own topic prefix)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from foldflow.admin import PartitionMismatch, ensure_topics, ensure_topics_at_start
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, COMMANDS, DEFINITIONS, EVENTS, RESULTS


@pytest.fixture
def prefixed(
    stack: Settings, admin: AdminClient, unique_name: Callable[..., str]
) -> Iterator[Settings]:
    """Settings with a topic prefix of this test's own; its topics are deleted afterwards."""
    settings = stack.model_copy(update={"topic_prefix": unique_name() + "."})
    yield settings
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()


def _create(admin: AdminClient, topic: NewTopic) -> None:
    """Create one topic and wait until the broker's metadata shows it."""
    for future in admin.create_topics([topic]).values():
        future.result()
    deadline = time.monotonic() + 30
    while topic.topic not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)


def _configs(admin: AdminClient, name: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result()
    return {key: entry.value for key, entry in entries.items()}


def test_ensure_creates_the_design_topics(prefixed: Settings, admin: AdminClient) -> None:
    outcomes = ensure_topics(prefixed)

    p = prefixed.topic_prefix
    expected = {
        p + COMMANDS: (6, "delete", str(7 * 24 * 3600 * 1000)),
        p + RESULTS: (6, "delete", str(7 * 24 * 3600 * 1000)),
        p + EVENTS: (6, "delete", "-1"),
        p + DEFINITIONS: (1, "compact", None),
        p + "wf.dlq": (6, "delete", str(30 * 24 * 3600 * 1000)),
        p + "wf.orchestrator-state": (6, "compact", None),  # co-partitioned with the inputs
    } | {f"{p}wf.tasks.{t}": (6, "delete", str(7 * 24 * 3600 * 1000)) for t in BUILTIN_TASK_TYPES}
    assert {o.name: o.outcome for o in outcomes} == dict.fromkeys(expected, "created")

    topics = admin.list_topics(timeout=10).topics
    for name, (partitions, cleanup, retention) in expected.items():
        assert len(topics[name].partitions) == partitions, name
        configs = _configs(admin, name)
        assert configs["cleanup.policy"] == cleanup, name
        if retention is not None:
            assert configs["retention.ms"] == retention, name


def test_ensure_twice_is_ok(prefixed: Settings) -> None:
    ensure_topics(prefixed, task_types=())
    again = ensure_topics(prefixed, task_types=())
    assert [o.outcome for o in again] == ["ok"] * len(again)


def test_a_co_partitioned_topic_with_other_partitions_is_refused(
    prefixed: Settings, admin: AdminClient
) -> None:
    results = prefixed.topic_prefix + RESULTS
    _create(admin, NewTopic(results, num_partitions=2))

    with pytest.raises(PartitionMismatch, match=f"{results} has 2"):
        ensure_topics(prefixed)
    assert prefixed.topic_prefix + COMMANDS not in admin.list_topics(timeout=10).topics

    env = {**os.environ, "FOLDFLOW_KAFKA_BOOTSTRAP": prefixed.kafka_bootstrap,
           "FOLDFLOW_TOPIC_PREFIX": prefixed.topic_prefix}  # fmt: skip
    cli = subprocess.run(
        [sys.executable, "-m", "foldflow.cli.main", "topics", "ensure"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 2
    assert "refused" in cli.stderr


def test_an_existing_topic_with_another_cleanup_policy_is_reported(
    prefixed: Settings, admin: AdminClient
) -> None:
    definitions = prefixed.topic_prefix + DEFINITIONS
    _create(admin, NewTopic(definitions, num_partitions=1))

    outcomes = {o.name: o for o in ensure_topics(prefixed, task_types=())}

    assert outcomes[definitions].outcome == "differs"
    assert "cleanup.policy=compact" in outcomes[definitions].note


def test_a_service_starting_before_the_broker_is_reachable_waits_for_it(
    prefixed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """For the first seconds nothing listens at the bootstrap address (as while a broker
    restarts); then it forwards to the broker. The topics are prepared once it does."""
    host, port = prefixed.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        late_port = probe.getsockname()[1]  # free now; listened on only later
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        time.sleep(3.0)
        with socket.create_server(("127.0.0.1", late_port)) as listener:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((host, int(port)))
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    late = prefixed.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{late_port}"})
    try:
        with caplog.at_level(logging.WARNING, logger="foldflow.admin"):
            outcomes = ensure_topics_at_start(late, wait_s=60, timeout=1.0)
    finally:
        stop.set()
    assert {o.outcome for o in outcomes} == {"created"}
    assert "cannot prepare the topics yet" in caplog.text


def test_a_service_gives_up_on_an_unreachable_broker_after_its_wait() -> None:
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="never.")
    started = time.monotonic()
    with pytest.raises(KafkaException):
        ensure_topics_at_start(nowhere, wait_s=2, timeout=1.0)
    assert time.monotonic() - started < 30
