"""Many instances of every service, SIGKILLed at random under load (DESIGN §11).

`foldflow up --orchestrators 3 --workers 3 --projectors 2 --gateways 2` on a private topic
set and database; a client starts workflows through both gateways (an Idempotency-Key per
workflow, a retry on the other gateway when one is gone); every few seconds a random
instance of any service is SIGKILLed and `foldflow scale` starts it again; then `foldflow
scale` takes workers and orchestrators down and back up. Then: every accepted workflow
completed exactly once in ``wf.events`` and PostgreSQL holds exactly what ``wf.events``
holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from projection_support import inconsistencies, scratch_database
from scale_support import (
    CHAIN,
    Chaos,
    GatewayStarts,
    UpDeployment,
    delete_topics_and_groups,
    drain_failure,
    finished,
    histories,
    log_problems,
    projection_differences,
    read_topics,
    wait_for,
)
from sqlalchemy import create_engine, text

from foldflow.settings import Settings
from foldflow.topics import Topology

INSTANCES = {"orchestrator": 3, "worker": 3, "projector": 2, "gateway": 2}
COUNTS = tuple(arg for kind, n in INSTANCES.items() for arg in (f"--{kind}s", str(n)))
RATE = 4.0  # workflow starts per second
CHAOS_S = 48.0
KILL_EVERY_S = 6.0
DRAIN_S = 180.0


@pytest.fixture
def deployment(stack: Settings, tmp_path: Path) -> Iterator[UpDeployment]:
    """A private `foldflow up` deployment on the session's Kafka and a scratch database."""
    with scratch_database(stack.database_url) as database:
        d = UpDeployment.create(kafka_bootstrap=stack.kafka_bootstrap, database_url=database,
                                state_dir=tmp_path / "state")  # fmt: skip
        try:
            yield d
        finally:
            d.foldflow("down", timeout=180)
            delete_topics_and_groups(stack, d.env["FOLDFLOW_TOPIC_PREFIX"])


def test_many_instances_killed_at_random_complete_every_workflow_once(
    deployment: UpDeployment, tmp_path: Path
) -> None:
    d = deployment
    began = time.monotonic()
    phases: list[tuple[str, float]] = []

    def phase(name: str) -> None:
        phases.append((name, round(time.monotonic() - began, 1)))

    d.must("up", *COUNTS, timeout=600)
    phase("up")
    ps = d.must("ps")
    for name in ("orchestrator-3", "worker-3", "projector-2", "gateway-2"):
        assert name in ps, ps
    assert len(d.pids()) == 10

    chain = tmp_path / "chain.yaml"
    chain.write_text(yaml.safe_dump(CHAIN))
    d.must("definitions", "register", str(chain))
    urls = d.gateway_urls(2)
    auth = {"Authorization": f"Bearer {d.api_key}"}
    wait_for(lambda: all(httpx.get(f"{u}/v1/definitions/{CHAIN['name']}", headers=auth,
                                   timeout=5).status_code == 200 for u in urls),
             timeout=60, what="the definition projected and served by both gateways")  # fmt: skip

    phase("definition served")
    load = GatewayStarts(urls, d.api_key, rate=RATE).start()
    chaos = Chaos(d, INSTANCES, every=KILL_EVERY_S).start()
    try:
        time.sleep(CHAOS_S)
    finally:
        chaos.stop()
    phase("chaos, restarts done")
    try:
        # scaling down and up again while the load goes on: groups rebalance, nothing lost
        d.must("scale", "worker=1", "orchestrator=2", "projector=1")
        phase("scaled down")
        time.sleep(5)
        d.must("scale", "worker=3", "orchestrator=3", "projector=2")
        phase("scaled up")
        time.sleep(5)
    finally:
        load.stop()
    phase("load stopped")

    report = (f"kills {chaos.kills}; HTTP outcomes {dict(load.statuses)}; "
              f"{len(load.accepted)} accepted, {load.retries} retries; "
              f"phases {phases}")  # fmt: skip
    print(report)
    assert not chaos.errors, chaos.errors
    assert len(chaos.kills) >= 5, report
    assert not load.gave_up, report
    ids = set(load.accepted)
    assert len(ids) >= RATE * CHAOS_S * 0.5, report

    settings = d.settings()
    events = Topology.of(settings).events
    check = finished(settings, events, ids)
    try:
        wait_for(check, timeout=DRAIN_S, what="every accepted workflow ended in wf.events",
                 every=3)  # fmt: skip
    except AssertionError as exc:
        raise drain_failure(exc, d, check, report, "many-instances") from None
    phase("all ended in wf.events")
    by_workflow = histories(read_topics(settings, [events]))
    assert log_problems(by_workflow, ids) == []
    # the log holds no workflow the client was not told about (a start is one 202 or none)
    assert set(by_workflow) - ids == set(), "workflows started without a 202"

    engine = create_engine(settings.database_url)
    try:
        def all_projected() -> bool:
            with engine.connect() as conn:
                done = conn.execute(text(
                    "SELECT count(*) FROM workflow_instances WHERE status = 'completed'"
                )).scalar_one()  # fmt: skip
            return int(done) >= len(ids)

        wait_for(all_projected, timeout=DRAIN_S, what="every workflow projected completed")
        phase("all projected")
        print(f"phases {phases}")
        assert projection_differences(engine, by_workflow, ids) == []
        assert inconsistencies(engine) == []
    finally:
        engine.dispose()
