"""No input is skipped, whatever fails around it (DESIGN §11: no accepted command is lost).

1. faust's ``take_events`` acks a batch in its ``finally`` when the agent body raises, so
   faust commits the offsets of inputs that were never applied: before the fix a transient
   failure (the first task-topic check, as a broker admin timeout) silently lost every
   workflow start of that batch — they never got a single event on ``wf.events``.
2. Records the consumer never delivers are committed past by faust (its commit skips an
   un-acked offset at the head): the failed demo run lost a start at offset 0 and results,
   each costing a 30 s attempt timeout. The orchestrator now reads a hole from the log.
3. An orchestrator that dies after its events were acked but before their states were
   stored: its successor folds those events from ``wf.events`` into the recovered states
   and does not decide on them again (once it did, and a timer it fired first forked a
   workflow's history).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from orchestrator_harness import (
    REPO,
    STARTUP_S,
    Deployment,
    EventLog,
    Service,
    private_settings,
    register_all,
)

from foldflow.settings import Settings
from schemas.messages import StartWorkflow, dump_json

HERE = Path(__file__).resolve().parent


def script_orchestrator(script: str, settings: Settings, log_dir: Path) -> Service:
    """``foldflow run orchestrator`` through a script that patches one thing first."""
    service = Service(script, settings, log_dir, args=["orchestrator"])
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "FOLDFLOW_PARTITIONS": str(settings.partitions),
        "FOLDFLOW_METRICS_PORT": "0",
        "FOLDFLOW_INSTANCE_ID": service.log_path.stem,
        "FOLDFLOW_STATE_DIR": str(log_dir / f"{service.log_path.stem}-state"),
        "PYTHONPATH": str(REPO),
    }
    service._log = service.log_path.open("ab")
    service.proc = subprocess.Popen(
        [sys.executable, str(HERE / f"{script}.py")], env=env, cwd=REPO,
        stdout=service._log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
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


@dataclass
class Fresh:
    """A deployment of its own (offsets from 0), its orchestrator dropping records."""

    deployment: Deployment
    events: EventLog
    orchestrator: Service


@pytest.fixture
def fresh(stack: Settings, log_dir: Path) -> Iterator[Fresh]:
    """Its own topics; the orchestrator's consumer drops a command at offset 0 and a
    result at offset 1, once each; a worker."""
    settings = private_settings(stack, partitions=3)
    deployment = Deployment(settings)
    register_all(deployment)
    events = EventLog(settings)
    orchestrator = script_orchestrator("dropping_orchestrator", settings, log_dir)
    worker = Service("worker-fresh", settings, log_dir, args=["worker"]).start()
    yield Fresh(deployment, events, orchestrator)
    worker.stop()
    orchestrator.stop()
    events.close()
    deployment.close()


def start_batch(deployment: Deployment, ids: list[str]) -> None:
    deployment.publisher.publish_many([  # one publish: they arrive as one batch
        (deployment.topology.commands,
         deployment._envelope(wf, StartWorkflow("t-child", None, dump_json({"x": i}))))
        for i, wf in enumerate(ids)
    ])  # fmt: skip


def test_a_batch_that_raises_is_retried_not_skipped(
    deployment: Deployment, events: EventLog, flaky_orchestrator: Service, worker: Service
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = [f"batch-{run}-{i}" for i in range(6)]
    start_batch(deployment, ids)
    statuses = events.wait_finished(ids, timeout=90)
    assert set(statuses.values()) == {"completed"}, statuses
    log = flaky_orchestrator.log_text()
    assert "injected admin timeout" in log  # the failure did happen, and was retried
    assert "retrying it in" in log
    assert "the consumer skipped" not in log  # every input offset reached the agent
    for wf in ids:  # once each: a retried batch re-emits identical events, never new ones
        assert events.types(wf).count("workflow.started.v1") >= 1
        assert len({e.sequence for e in events.by_workflow[wf]}) == len(
            {(e.sequence, e.event_id) for e in events.by_workflow[wf]}
        ), wf


def test_inputs_the_consumer_never_delivered_are_read_again(fresh: Fresh) -> None:
    events, dropping_orchestrator = fresh.events, fresh.orchestrator
    run = uuid.uuid4().hex[:6]
    ids = [f"hole-{run}-{i}" for i in range(12)]  # ≥ 2 records after each dropped one
    start_batch(fresh.deployment, ids)
    # well under the 30 s attempt timeout that used to cover a lost result
    statuses = events.wait_finished(ids, timeout=20)
    assert set(statuses.values()) == {"completed"}, statuses
    log = dropping_orchestrator.log_text()
    assert log.count("test: dropped") == 2  # the consumer did drop both records
    # ... and each came back: read from the log as a hole (a jump or a stall), or delivered
    # again after the recovery's seek to the first offset of a partition never committed
    assert all(e.event_type != "step.attempt_failed.v1"
               for wf in ids for e in events.by_workflow[wf])  # fmt: skip


def test_events_acked_but_never_stored_are_caught_up_not_decided_again(
    stack: Settings, log_dir: Path
) -> None:
    settings = private_settings(stack, partitions=3)
    deployment, events = Deployment(settings), EventLog(settings)
    register_all(deployment)
    worker = Service("worker-catchup", settings, log_dir, args=["worker"]).start()
    survivor = None
    try:
        doomed = script_orchestrator("crashing_orchestrator", settings, log_dir)
        run = uuid.uuid4().hex[:6]
        ids = [f"catchup-{run}-{i}" for i in range(6)]
        start_batch(deployment, ids)
        assert doomed.proc is not None and doomed.proc.wait(timeout=60) == 17
        assert "test: dying after the acks" in doomed.log_text()
        survivor = Service("orchestrator-survivor", settings, log_dir,
                           args=["orchestrator"]).start()  # fmt: skip
        survivor.wait_for_log("recovered \\d+ workflows", timeout=STARTUP_S)
        assert "did not cover" in survivor.log_text()  # it caught up before any input
        # the results the dead one handled come again and are known as applied
        survivor.wait_for_log(r"task\.succeeded\.v1 ignored \(duplicate\)", timeout=60)

        statuses = events.wait_finished(ids, timeout=60)
        assert set(statuses.values()) == {"completed"}, statuses
        for wf in ids:  # nothing decided twice: every sequence on the log exactly once
            sequences = [e.sequence for e in events.by_workflow[wf]]
            assert sorted(sequences) == list(range(1, len(sequences) + 1)), (wf, sequences)
    finally:
        if survivor is not None:
            survivor.stop()
        worker.stop()
        events.close()
        deployment.close()
