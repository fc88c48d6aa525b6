"""A batch whose handling raises is retried, never skipped (DESIGN §11).

faust's ``take_events`` acks a batch in its ``finally`` when the agent body raises, so
faust commits the offsets of inputs that were never applied: before the fix a transient
failure (here the first task-topic check, as a broker admin timeout) silently lost every
workflow start of that batch — they never got a single event on ``wf.events``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from orchestrator_harness import REPO, STARTUP_S, Deployment, EventLog, Service

from foldflow.settings import Settings
from schemas.messages import StartWorkflow, dump_json

SCRIPT = Path(__file__).resolve().parent / "flaky_admin_orchestrator.py"


@pytest.fixture
def flaky_orchestrator(
    settings: Settings, deployment: Deployment, log_dir: Path
) -> Iterator[Service]:
    """The orchestrator, its first ``ensure_topics`` failing (a broker admin timeout)."""
    service = Service("flaky-orchestrator", settings, log_dir, args=["orchestrator"])
    env = {
        **os.environ,
        "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "FOLDFLOW_PARTITIONS": str(settings.partitions),
        "FOLDFLOW_METRICS_PORT": "0",
        "FOLDFLOW_INSTANCE_ID": service.log_path.stem,
        "FOLDFLOW_STATE_DIR": str(log_dir / "flaky-state"),
        "PYTHONPATH": str(REPO),
    }
    service._log = service.log_path.open("ab")
    service.proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, cwd=REPO, stdout=service._log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    service.wait_for_log("recovered \\d+ workflows", timeout=STARTUP_S)
    yield service
    service.stop()


def test_a_batch_that_raises_is_retried_not_skipped(
    deployment: Deployment, events: EventLog, flaky_orchestrator: Service, worker: Service
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = [f"batch-{run}-{i}" for i in range(6)]
    deployment.publisher.publish_many([  # one publish: they arrive as one batch
        (deployment.topology.commands,
         deployment._envelope(wf, StartWorkflow("t-child", None, dump_json({"x": i}))))
        for i, wf in enumerate(ids)
    ])  # fmt: skip
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
