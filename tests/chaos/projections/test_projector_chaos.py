"""The projector process killed with SIGKILL mid-batch, and PostgreSQL restarted under load.

After every kill the database must hold exactly the events before the stored positions
(effectively once), each workflow's history contiguous from 1; after a restart the
projector catches up with nothing lost and nothing applied twice.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import pytest
from projection_fixtures import ProjectorProcess
from projection_support import (
    Script,
    caught_up,
    event_count,
    inconsistencies,
    publish,
    stored_offsets,
    wait_for_events,
    wait_until,
)
from sqlalchemy import Engine, text

from foldflow.producers import Publisher
from foldflow.schemas import messages as m
from foldflow.settings import Settings
from foldflow.topics import Topology

EVENTS_PER_WORKFLOW = 10


def ten_event_workflow(wid: str) -> Script:
    """started, four steps (scheduled + completed), completed: ten events."""
    s = Script(wid).start("bulk")
    for step in ("a", "b", "c", "d"):
        s.run_step(step)
    s.add(m.WorkflowCompleted(m.dump_json({"ok": True})))
    assert len(s.events) == EVENTS_PER_WORKFLOW
    return s


def assert_effectively_once(engine: Engine) -> int:
    """The applied events are exactly those before the stored positions; return how many."""
    applied = event_count(engine)
    # every record of the events topic is a distinct event, so positions count events
    events_topic_positions = sum(
        offset for (topic, _), offset in stored_offsets(engine).items()
        if topic.endswith("wf.events")
    )
    assert applied == events_topic_positions
    assert inconsistencies(engine) == []
    return applied


def test_sigkill_mid_batch_loses_nothing_and_applies_nothing_twice(
    settings: Settings, engine: Engine, publisher: Publisher, projector_process: ProjectorProcess
) -> None:
    workflows = 2000
    scripts = [ten_event_workflow(f"wf-k{i:05d}-{uuid.uuid4().hex[:4]}") for i in range(workflows)]
    total = publish(publisher, settings, scripts)
    assert total == 20_000

    kills = []
    for threshold in (2_000, 8_000, 14_000):
        projector_process.start()
        wait_until(lambda t=threshold: event_count(engine) >= t, timeout=180, interval=0.05,
                   what=f"{threshold} events applied")
        projector_process.kill()
        kills.append(assert_effectively_once(engine))
    assert kills == sorted(kills) and kills[-1] < total, kills  # killed before the end

    projector_process.start()
    before = event_count(engine)
    # the rate counts from the first batch after the restart (the group rebalance excluded)
    wait_until(lambda: event_count(engine) > before, timeout=120, interval=0.02,
               what="the first batch after the restart")
    started, first = time.monotonic(), event_count(engine)
    wait_for_events(engine, total, timeout=300)
    rate = (total - first) / (time.monotonic() - started)
    wait_until(lambda: caught_up(engine, settings), timeout=60, what="positions at the end")
    assert assert_effectively_once(engine) == total
    with engine.connect() as conn:
        statuses = dict(conn.execute(text(
            "SELECT status, count(*) FROM workflow_instances GROUP BY status")).all())
    assert statuses == {"completed": workflows}
    print(f"\nkilled at {kills} events; then applied {total - first} events at {rate:.0f}/s")


def restart_postgres() -> None:
    """Restart the machine's PostgreSQL cluster (shared: keep it to one short restart)."""
    subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120,
                   capture_output=True)


@pytest.mark.exclusive
def test_postgres_restart_under_load_is_retried_and_caught_up(
    settings: Settings, engine: Engine, publisher: Publisher, projector_process: ProjectorProcess
) -> None:
    chunks = [[ten_event_workflow(f"wf-pg{c:02d}{i:03d}-{uuid.uuid4().hex[:4]}")
               for i in range(50)] for c in range(16)]
    total = sum(len(s.events) for chunk in chunks for s in chunk)
    projector_process.start()
    published = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            for chunk in chunks:
                publish(publisher, settings, chunk)
                time.sleep(0.2)
        except BaseException as exc:
            failures.append(exc)
        finally:
            published.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: event_count(engine) >= 1000, timeout=120, interval=0.05,
                   what="the projector under load")
        restart_postgres()
    finally:
        producer.join(120)
    assert failures == []
    assert published.is_set()
    wait_for_events(engine, total, timeout=300)
    assert projector_process.alive(), "the projector must ride out the restart, not die"
    wait_until(lambda: caught_up(engine, settings), timeout=60, what="positions at the end")
    assert assert_effectively_once(engine) == total
    log = projector_process.log.read_text()
    assert "PostgreSQL unavailable, retrying" in log
    assert Topology.of(settings).events in {t for (t, _) in stored_offsets(engine)}
