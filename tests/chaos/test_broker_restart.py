"""The broker restarted mid-run: every workflow still ends exactly once, in the event log
and in the projections (DESIGN §11), with every service running as its own process.

The restart is real (SIGTERM to the broker ``foldflow stack up`` started, then a start on
the same storage), so this test runs only when this checkout manages the broker; the
chaos tests run first in a session, while the broker holds few topics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from orchestrator_harness import (
    STARTUP_S,
    Deployment,
    EventLog,
    Service,
    assert_log_invariants,
)
from projection_fixtures import ProjectorProcess
from projection_support import inconsistencies, scratch_database, wait_until
from sqlalchemy import create_engine, text

from foldflow import stack as local_stack
from foldflow.definitions import Definition
from foldflow.producers import PublishError
from foldflow.projections.db import upgrade
from foldflow.settings import Settings

WAIT_S = 180.0

CHAIN = {
    "name": "restart-chain",
    "steps": [
        {"id": "s1", "task": "builtin.echo", "input": {"n": 1}},
        {"id": "s2", "task": "builtin.sleep", "after": ["s1"], "input": {"seconds": 0.2}},
        {"id": "s3", "sleep": "500ms", "after": ["s2"]},
        {"id": "s4", "task": "builtin.echo", "after": ["s3"], "input": {"n": 4}},
    ],
}


@pytest.fixture
def database(settings: Settings) -> Iterator[str]:
    """A migrated scratch database for the test's projector."""
    with scratch_database(settings.database_url) as url:
        upgrade(url)
        yield url


@pytest.mark.exclusive
def test_broker_restart_mid_run_loses_nothing_and_ends_each_workflow_once(
    settings: Settings,
    deployment: Deployment,
    events: EventLog,
    spawn: Callable[..., Service],
    database: str,
    tmp_path: Path,
) -> None:
    if local_stack.managed_kafka_pid(settings) is None:
        pytest.skip(f"the broker at {settings.kafka_bootstrap} was not started by "
                    "`foldflow stack up` from this checkout: not this test's to restart")
    deployment.register(Definition.from_data(CHAIN))
    spawn("orchestrator", "orchestrator").wait_for_log("recovered \\d+ workflows",
                                                       timeout=STARTUP_S)  # fmt: skip
    spawn("worker", "worker", "--concurrency", "16")
    projector = ProjectorProcess(settings.model_copy(update={"database_url": database}),
                                 tmp_path / "projector.log")  # fmt: skip
    projector.start()
    try:
        ids = [deployment.start("restart-chain", {"i": i}) for i in range(30)]
        events.wait(lambda log: sum(len(log.by_workflow.get(w, [])) for w in ids) >= 80,
                    timeout=WAIT_S, what="80 events of the 30 workflows")  # fmt: skip
        # Starts keep coming while the broker stops and starts again (those the broker did
        # not ack are retried), so workflows are in flight across the restart however
        # long it takes; a loaded shared machine can take minutes to bring a broker back.
        feeding = threading.Event()
        feeding.set()
        fed: list[str] = []

        def feed() -> None:
            n = 0
            while feeding.is_set():
                try:
                    fed.append(deployment.start("restart-chain", {"fed": n}))
                    n += 1
                except PublishError:
                    pass
                time.sleep(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        local_stack.restart_kafka(settings, wait=WAIT_S)
        time.sleep(5.0)  # a few more after the broker is back
        feeding.clear()
        feeder.join(60)
        ids += fed

        statuses = events.wait_finished(ids, timeout=WAIT_S)
        assert set(statuses.values()) == {"completed"}, statuses
        assert_log_invariants(events, ids)

        engine = create_engine(database)
        try:
            def projected() -> bool:
                with engine.connect() as conn:
                    rows = conn.execute(
                        text("SELECT status FROM workflow_instances WHERE id = ANY(:ids)"),
                        {"ids": ids},
                    ).scalars().all()
                return len(rows) == len(ids) and set(rows) == {"completed"}

            wait_until(projected, timeout=WAIT_S, what="every workflow projected completed")
            assert inconsistencies(engine) == []
            with engine.connect() as conn:
                endings = conn.execute(text(
                    "SELECT workflow_id, count(*) FROM workflow_events "
                    "WHERE event_type = 'workflow.completed.v1' GROUP BY workflow_id"
                )).all()  # fmt: skip
            assert sorted(endings) == sorted((wf, 1) for wf in ids)
        finally:
            engine.dispose()
        assert projector.alive(), "the projector did not survive the broker restart"
    finally:
        projector.stop()
