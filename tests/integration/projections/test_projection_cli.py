"""``foldflow status``, ``foldflow events`` and ``foldflow projections rebuild`` as a user
runs them: real processes against the test's database and topics."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from projection_fixtures import RunProjector
from projection_support import (
    SCENARIOS,
    caught_up,
    dump_tables,
    publish,
    scratch_database,
    wait_for_events,
    wait_until,
)
from sqlalchemy import Engine

from foldflow.producers import Publisher
from foldflow.settings import Settings


def foldflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
           "FOLDFLOW_DATABASE_URL": settings.database_url, "COLUMNS": "200",
           "FOLDFLOW_PARTITIONS": str(settings.partitions),
           "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_status_events_and_rebuild_commands(
    settings: Settings, engine: Engine, publisher: Publisher, run_projector: RunProjector
) -> None:
    saga = SCENARIOS["compensated"](f"wf-cli-{uuid.uuid4().hex[:6]}", "acme")
    n = publish(publisher, settings, [saga])
    with run_projector():
        wait_for_events(engine, n)
        wait_until(lambda: caught_up(engine, settings), timeout=60, what="offsets at the end")
    before = dump_tables(engine)

    status = foldflow(settings, "status", saga.key)  # a key names its tenant itself
    assert status.returncode == 0, status.stderr
    for text in ("compensated", "saga v1", "reserve", "charge", "succeeded", "failed"):
        assert text in status.stdout, text
    events = foldflow(settings, "events", saga.workflow_id, "--tenant", "acme")
    assert events.returncode == 0, events.stderr
    types = [e.event_type for e in saga.events]
    assert all(t in events.stdout for t in types)
    assert events.stdout.index("workflow.started.v1") < events.stdout.index(
        "workflow.compensated.v1")
    missing = foldflow(settings, "status", saga.workflow_id, "--tenant", "someone-else")
    assert missing.returncode == 1
    assert "no workflow" in missing.stderr
    not_defaults = foldflow(settings, "status", saga.workflow_id)  # the default tenant's id
    assert not_defaults.returncode == 1
    assert f"no workflow {saga.workflow_id} for tenant default" in not_defaults.stderr
    conflicting = foldflow(settings, "events", saga.key, "--tenant", "someone-else")
    assert conflicting.returncode == 2 and "not 'someone-else'" in conflicting.stderr

    rebuilt = foldflow(settings, "projections", "rebuild", "--batch", "4")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    assert f"{n} events" in rebuilt.stdout
    assert dump_tables(engine) == before


def test_run_projector_refuses_an_unmigrated_database(settings: Settings) -> None:
    with scratch_database(settings.database_url) as url:
        bare = settings.model_copy(update={"database_url": url})
        done = foldflow(bare, "run", "projector")
    assert done.returncode == 2
    assert "foldflow db upgrade" in done.stderr
