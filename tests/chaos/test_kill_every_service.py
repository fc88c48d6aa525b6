"""SIGKILL the orchestrator, a worker and the projector in turn under load: every workflow
completes with the default retry policy, and the projections equal ``wf.events``.

Real processes (``foldflow run orchestrator|worker|projector``), real Kafka, a scratch
PostgreSQL database. Three-step workflows start at a steady rate; every
``KILL_EVERY_S`` one service (in turn: the worker, the orchestrator, the projector) is
SIGKILLed and started again at once, as a supervisor (or ``foldflow up``) would, under the
same instance id; one of each runs, as under ``foldflow up``. A killed worker's tasks must
run again well inside the default 30 s attempt timeout, or attempts time out and, three
timeouts later, workflows fail (with librdkafka's 45 s session timeout most of them did).

The default run takes about 2-3 minutes; ``FOLDFLOW_CHAOS_LONG=1`` runs the full-size
scenario (1,800 workflows at 20/s for 90 s, a kill every 8 s).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from orchestrator_harness import (
    Deployment,
    EventLog,
    Service,
    assert_log_invariants,
    status_of,
)
from projection_support import inconsistencies, scratch_database, wait_until
from sqlalchemy import Engine, create_engine, text

from foldflow.definitions import Definition
from foldflow.projections.db import upgrade
from foldflow.settings import Settings

LONG = os.environ.get("FOLDFLOW_CHAOS_LONG") == "1"
WORKFLOWS, RATE_PER_S = (1800, 20.0) if LONG else (240, 4.0)
KILL_EVERY_S = 8.0
READY_S = 120.0
DRAIN_S = 300.0 if LONG else 180.0

#: Three steps with the default retry policy (3 attempts, 30 s each).
THREE_STEPS = {
    "name": "chaos-three",
    "steps": [
        {"id": "a", "task": "builtin.echo", "input": {"n": "${input.n}"}},
        {"id": "b", "task": "builtin.sleep", "after": ["a"], "input": {"seconds": 0.2}},
        {"id": "c", "task": "builtin.echo", "after": ["b"], "input": {"done": True}},
    ],
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Supervised:
    """One service that is killed and restarted under a stable instance id and port."""

    name: str
    args: tuple[str, ...]
    settings: Settings
    log_dir: Path
    env: dict[str, str]
    service: Service | None = None
    kills: int = 0

    def start(self) -> None:
        self.service = Service(self.name, self.settings, self.log_dir, args=self.args,
                               env=self.env).start()

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.env['FOLDFLOW_METRICS_PORT']}/metrics"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill_and_restart(self) -> None:
        assert self.service is not None
        assert self.service.proc is not None and self.service.proc.poll() is None, (
            f"{self.name} died on its own:\n{self.service.log_text()[-3000:]}")
        self.service.kill()
        self.kills += 1
        self.start()

    def stop(self) -> None:
        proc = self.service.proc if self.service is not None else None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def database(settings: Settings) -> Iterator[str]:
    """A migrated scratch database for the test's projector."""
    with scratch_database(settings.database_url) as url:
        upgrade(url)
        yield url


@pytest.fixture
def supervise(settings: Settings, database: str, tmp_path: Path
              ) -> Iterator[Callable[[str, tuple[str, ...]], Supervised]]:
    """``supervise(name, args)``: a service started now, killed after the test."""
    started: list[Supervised] = []

    def make(name: str, args: tuple[str, ...]) -> Supervised:
        env = {"FOLDFLOW_INSTANCE_ID": f"{name}-{settings.topic_prefix.rstrip('.')}",
               "FOLDFLOW_METRICS_PORT": str(_free_port()),
               "FOLDFLOW_DATABASE_URL": database}
        supervised = Supervised(name, args, settings, tmp_path, env)
        supervised.start()
        started.append(supervised)
        return supervised

    yield make
    for supervised in started:
        supervised.stop()


def _projected(engine: Engine, ids: list[str]) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status, last_sequence FROM workflow_instances "
                                 "WHERE id = ANY(:ids)"), {"ids": ids})
        return {r.id: (r.status, r.last_sequence) for r in rows}


def _projected_history(engine: Engine, ids: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    history: dict[str, list[tuple[int, str, str]]] = collections.defaultdict(list)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT workflow_id, sequence, event_id, event_type "
                                 "FROM workflow_events WHERE workflow_id = ANY(:ids) "
                                 "ORDER BY workflow_id, sequence"), {"ids": ids})
        for r in rows:
            history[r.workflow_id].append((r.sequence, r.event_id, r.event_type))
    return history


def test_killing_any_service_under_load_fails_no_workflow(
    settings: Settings,
    deployment: Deployment,
    events: EventLog,
    supervise: Callable[[str, tuple[str, ...]], Supervised],
    database: str,
) -> None:
    deployment.register(Definition.from_data(THREE_STEPS))
    orchestrator = supervise("orchestrator", ("orchestrator",))
    worker = supervise("worker", ("worker", "--concurrency", "16"))
    projector = supervise("projector", ("projector",))
    everyone = [orchestrator, worker, projector]
    wait_until(lambda: all(s.ready() for s in everyone), timeout=READY_S,
               what="every service ready (/metrics answers)")

    ids: list[str] = []
    feeding = threading.Thread(target=lambda: _feed(deployment, ids), daemon=True)
    feeding.start()
    victims = itertools.cycle(everyone[1:] + everyone[:1])  # worker, projector, orchestrator
    next_kill = time.monotonic() + KILL_EVERY_S / 2
    while feeding.is_alive():
        feeding.join(max(0.0, next_kill - time.monotonic()))
        if time.monotonic() >= next_kill:
            next(victims).kill_and_restart()
            next_kill += KILL_EVERY_S
    assert len(ids) == WORKFLOWS

    kills = {s.name: s.kills for s in everyone}
    try:
        statuses = events.wait_finished(ids, timeout=DRAIN_S)
    except AssertionError:
        stuck = [wf for wf in ids if status_of(events.by_workflow.get(wf, [])) is None]
        raise AssertionError(
            f"{len(stuck)} of {WORKFLOWS} workflows unfinished after {DRAIN_S} s (kills "
            f"{kills}); e.g. " + "; ".join(f"{wf}: {' '.join(events.types(wf)[-3:])}"
                                           for wf in stuck[:8])
        ) from None
    outcome = collections.Counter(statuses.values())
    assert outcome == {"completed": WORKFLOWS}, (outcome, kills, _failures(events, statuses))
    assert_log_invariants(events, ids)
    assert all(s.kills >= 1 for s in everyone), kills

    engine = create_engine(database)
    try:
        wait_until(lambda: _projected(engine, ids) == {
            wf: ("completed", max(e.sequence or 0 for e in events.by_workflow[wf]))
            for wf in ids
        }, timeout=DRAIN_S, what="every workflow projected as completed")
        assert inconsistencies(engine) == []
        history = _projected_history(engine, ids)
        for wf in ids:
            unique = {e.sequence: e for e in events.by_workflow[wf]}
            assert history[wf] == [(s, unique[s].event_id, unique[s].event_type)
                                   for s in sorted(unique)], wf
    finally:
        engine.dispose()
    timed_out = sum(getattr(e.payload, "timed_out", False) for wf in ids
                    for e in {e.sequence: e for e in events.by_workflow[wf]}.values())
    print(f"chaos: {WORKFLOWS} workflows, {dict(outcome)}, kills {kills}, "
          f"attempts timed out {timed_out}")


def _feed(deployment: Deployment, ids: list[str]) -> None:
    started = time.monotonic()
    for n in range(WORKFLOWS):
        delay = started + n / RATE_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.append(deployment.start("chaos-three", {"n": n},
                                    workflow_id=f"wf-chaos-{uuid.uuid4().hex[:10]}"))


def _failures(events: EventLog, statuses: dict[str, str]) -> list[str]:
    """The last error of a few workflows that did not complete (for the failure message)."""
    out = []
    for wf, status in statuses.items():
        if status != "completed" and len(out) < 5:
            last = events.by_workflow[wf][-1].payload
            out.append(f"{wf}: {status}: {getattr(last, 'error', '')}")
    return out
