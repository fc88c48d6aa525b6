"""A transaction that fails is aborted and its inputs decided again, to the same events.

1. The first task-topic check fails like a broker admin timeout: the open transaction is
   aborted, the inputs are read again from the committed offsets, and every workflow of
   the batch completes, once.
2. A commit fails with an abortable error after everything of the transaction was
   produced (the broker really aborts it): the records of the aborted transaction stay
   invisible to a ``read_committed`` reader, and the inputs decided again give exactly the
   same events (the same bytes, as a ``read_uncommitted`` reader shows: the aborted copy
   and the committed one).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from orchestrator_harness import (
    STARTUP_S,
    Deployment,
    EventLog,
    Service,
    assert_log_invariants,
    delete_private_topics,
    private_settings,
    register_all,
)

from foldflow.kafka import kafka_config
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import StartWorkflow, dump_json
from foldflow.settings import Settings

HERE = Path(__file__).resolve().parent


def script_orchestrator(script: str, settings: Settings, log_dir: Path,
                        env: dict[str, str] | None = None) -> Service:  # fmt: skip
    """``foldflow run orchestrator`` through a script that patches one thing first."""
    service = Service(script, settings, log_dir, script=HERE / f"{script}.py", env=env).start()
    service.wait_for_log("recovered \\d+ workflows", timeout=STARTUP_S)
    return service


@pytest.fixture
def flaky_orchestrator(
    settings: Settings, deployment: Deployment, log_dir: Path
) -> Iterator[Service]:
    """The orchestrator, its first ``ensure_topics`` failing (a broker admin timeout)."""
    service = script_orchestrator("flaky_admin_orchestrator", settings, log_dir)
    yield service
    service.stop()


def start_batch(deployment: Deployment, ids: list[str]) -> None:
    deployment.publisher.publish_many([  # one publish: they arrive as one batch
        (deployment.topology.commands,
         deployment._envelope(wf, StartWorkflow("t-child", None, dump_json({"x": i}))))
        for i, wf in enumerate(ids)
    ])  # fmt: skip


def test_a_transaction_aborted_by_an_admin_failure_is_decided_again(
    deployment: Deployment, events: EventLog, flaky_orchestrator: Service, worker: Service
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = [f"batch-{run}-{i}" for i in range(6)]
    start_batch(deployment, ids)
    statuses = events.wait_finished(ids, timeout=90)
    assert set(statuses.values()) == {"completed"}, statuses
    log = flaky_orchestrator.log_text()
    assert "injected admin timeout" in log  # the failure did happen, and was retried
    assert "transaction aborted (task topics)" in log
    assert_each_event_once(events, ids)  # nothing aborted became visible


def _uncommitted_events(settings: Settings) -> dict[str, list[bytes]]:
    """Every record value of ``wf.events`` by workflow, aborted ones included."""
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"test-uncommitted-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_uncommitted",
    }))  # fmt: skip
    topic = settings.topic_prefix + "wf.events"
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])  # fmt: skip
    values: dict[str, list[bytes]] = defaultdict(list)
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 3:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    values[(msg.key() or b"").decode()].append(msg.value() or b"")
                    idle_since = time.monotonic()
    finally:
        consumer.close()
    return values


@contextmanager
def aborting_deployment(
    stack: Settings, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[Settings, Deployment, EventLog, Service]]:
    """A private deployment: a worker and ``aborting_orchestrator`` (with ``env``)."""
    settings = private_settings(stack, partitions=3)
    deployment, events = Deployment(settings), EventLog(settings)
    register_all(deployment)
    worker = Service("worker-abort", settings, log_dir, args=["worker"]).start()
    orchestrator = None
    try:
        orchestrator = script_orchestrator("aborting_orchestrator", settings, log_dir, env)
        yield settings, deployment, events, orchestrator
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        worker.stop()
        events.close()
        deployment.close()
        delete_private_topics(settings)


def assert_each_event_once(events: EventLog, ids: list[str]) -> None:
    """``read_committed``: every workflow's events once each, in sequence."""
    assert_log_invariants(events, ids)
    for wf in ids:
        sequences = [e.sequence for e in events.by_workflow[wf]]
        assert sequences == list(range(1, len(sequences) + 1)), (wf, sequences)


def test_an_aborted_commit_is_decided_again_to_the_same_events(
    stack: Settings, log_dir: Path
) -> None:
    with aborting_deployment(stack, log_dir) as (settings, deployment, events, orchestrator):
        ids = [f"abort-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
        start_batch(deployment, ids)
        statuses = events.wait_finished(ids, timeout=90)
        assert set(statuses.values()) == {"completed"}, statuses
        log = orchestrator.log_text()
        assert "test: failing the commit" in log
        assert "transaction aborted (commit_transaction:state)" in log
        assert_each_event_once(events, ids)

        everything = _uncommitted_events(settings)
        decided_twice = 0
        for wf in ids:
            by_sequence: dict[int, set[bytes]] = defaultdict(set)
            copies = everything[wf]
            for value in copies:
                event = decode(value)
                assert event.sequence is not None
                by_sequence[event.sequence].add(value)
            # an aborted copy is byte-identical to the committed one
            assert all(len(v) == 1 for v in by_sequence.values()), wf
            decided_twice += len(copies) - len(by_sequence)
        assert decided_twice > 0  # the aborted transaction did write events, decided again


@pytest.mark.parametrize("fails", [True, False], ids=["fails", "succeeds"])
def test_inputs_decided_while_a_commit_runs_wait_for_it_and_share_its_fate(
    stack: Settings, log_dir: Path, fails: bool
) -> None:
    """The loop goes on deciding while a commit runs on its helper thread. A commit that
    then fails aborts the transaction stacked on it too, and every input of both is decided
    again; one that succeeds lets the stacked one begin. Either way: each event once."""
    env = {"TEST_COMMIT_DELAY_S": "3", "TEST_COMMIT_FAILS": "1" if fails else "0"}
    with aborting_deployment(stack, log_dir, env) as (_, deployment, events, orchestrator):
        run = uuid.uuid4().hex[:6]
        first = [f"slow-{run}-{i}" for i in range(6)]
        start_batch(deployment, first)
        # the commit of their first results is slow: more starts come meanwhile
        orchestrator.wait_for_log("test: the commit of a transaction with a result takes",
                                  timeout=60)  # fmt: skip
        later = [f"slow-{run}-later-{i}" for i in range(6)]
        start_batch(deployment, later)
        ids = first + later
        statuses = events.wait_finished(ids, timeout=90)
        assert set(statuses.values()) == {"completed"}, statuses
        log = orchestrator.log_text()
        if fails:
            aborted = re.search(r"transaction aborted \(commit_transaction:state\): (\d+) inputs "
                                r"will be read again \((\d+) of them decided while", log)
            assert aborted is not None, log[-2000:]
            assert int(aborted.group(2)) > 0  # the stacked transaction held inputs
        else:
            assert "test: a slow commit" in log and "transaction aborted" not in log
        assert_each_event_once(events, ids)
