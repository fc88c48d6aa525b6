"""The CLI's commands name a tenant's own workflow ids (``--tenant``) or a workflow key, and
key what they publish by the workflow key, on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from foldflow.kafka import kafka_config
from foldflow.schemas import codec
from foldflow.schemas.messages import CancelWorkflow, Envelope, StartWorkflow, workflow_key
from foldflow.settings import Settings
from foldflow.topics import Topology


def foldflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix, "COLUMNS": "200",
           "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _commands(
    settings: Settings, count: int, *, polls: int = 30
) -> list[tuple[bytes | None, Envelope]]:
    topic = Topology.of(settings).commands
    consumer = Consumer(kafka_config(settings, {
                         "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False}))  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen: list[tuple[bytes | None, Envelope]] = []
    for _ in range(polls):
        for record in consumer.consume(num_messages=50, timeout=1.0):
            if record.error() is None and record.value() is not None:
                seen.append((record.key(), codec.decode(record.value())))
        if len(seen) >= count:
            break
    consumer.close()
    return seen


def test_a_tenants_commands_are_keyed_in_its_namespace(topics: Settings) -> None:
    wid = f"order-{uuid.uuid4().hex[:6]}"
    key = workflow_key("acme", wid)
    started = foldflow(topics, "start", "order", "--tenant", "acme", "--id", wid)
    assert started.returncode == 0, started.stderr
    assert f"started {wid} (order, tenant acme)" in started.stdout
    by_id = foldflow(topics, "cancel", wid, "--tenant", "acme", "--reason", "by id")
    by_key = foldflow(topics, "cancel", key, "--reason", "by key")
    default = foldflow(topics, "cancel", wid, "--reason", "default's")
    assert [p.returncode for p in (by_id, by_key, default)] == [0, 0, 0]
    assert f"cancel sent to {wid}" in by_key.stdout

    seen = _commands(topics, 4)
    assert [(k, e.workflow_id, e.tenant, type(e.payload)) for k, e in seen if k == key.encode()] \
        == [(key.encode(), key, "acme", StartWorkflow), (key.encode(), key, "acme", CancelWorkflow),
            (key.encode(), key, "acme", CancelWorkflow)]  # fmt: skip
    [(_, start)] = [(k, e) for k, e in seen if isinstance(e.payload, StartWorkflow)]
    assert isinstance(start.payload, StartWorkflow) and start.payload.tenant == "acme"
    [(_, theirs)] = [(k, e) for k, e in seen if k == wid.encode()]  # the default tenant's wid
    assert theirs.tenant == "default" and theirs.payload == CancelWorkflow("default's")


def test_ids_no_tenant_can_have_are_refused(topics: Settings) -> None:
    for args in (
        ("cancel", "@acme/x", "--tenant", "globex"),  # a key of another tenant
        ("cancel", "@/x"),
        ("start", "order", "--id", "@acme"),
    ):
        refused = foldflow(topics, *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "not a workflow" in refused.stderr
    assert _commands(topics, 1, polls=5) == []


def test_waiting_on_a_tenants_start_follows_its_key(topics: Settings) -> None:
    wid = f"order-{uuid.uuid4().hex[:6]}"
    waited = foldflow(topics, "start", "order", "--tenant", "acme", "--id", wid, "--wait",
                      "--timeout", "2")  # fmt: skip
    assert waited.returncode == 3  # nothing runs the workflow here: still pending
    assert f"{wid} did not end within 2s" in waited.stderr
    assert "@acme" not in waited.stdout
