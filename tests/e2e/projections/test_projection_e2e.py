"""The demo on a private deployment (its own topics, database, state dir and ports): every
workflow ends up in ``workflow_instances`` with its final status and its whole history,
exactly as the orchestrator wrote it to ``wf.events``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from projection_support import scratch_database, wait_until
from sqlalchemy import text

from foldflow.kafka import kafka_config
from foldflow.projections.db import make_engine
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import Envelope
from foldflow.settings import Settings
from foldflow.topics import Topology

REPO = Path(__file__).resolve().parents[3]
TERMINAL_EVENTS = {
    "workflow.completed.v1": "completed", "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation_failed",
    "workflow.cancelled.v1": "cancelled", "workflow.terminated.v1": "terminated",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def foldflow(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "foldflow.cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def deployment(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """``foldflow up`` with a private database and prefix; ``foldflow down`` at the end."""
    with scratch_database(stack.database_url) as url:
        env = {
            **os.environ,
            "COLUMNS": "200",
            "FOLDFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "FOLDFLOW_DATABASE_URL": url,
            "FOLDFLOW_TOPIC_PREFIX": f"e2e-proj-{uuid.uuid4().hex[:8]}.",
            "FOLDFLOW_STATE_DIR": str(tmp_path_factory.mktemp("state")),
            "FOLDFLOW_GATEWAY_PORT": str(_free_port()),
            "FOLDFLOW_ORCHESTRATOR_METRICS_PORT": str(_free_port()),
            "FOLDFLOW_WORKER_METRICS_PORT": str(_free_port()),
            "FOLDFLOW_PROJECTOR_METRICS_PORT": str(_free_port()),
        }
        up = foldflow(env, "up")
        try:
            assert up.returncode == 0, f"foldflow up failed:\n{up.stdout}\n{up.stderr}"
            yield env
        finally:
            foldflow(env, "down", timeout=120)


def read_events(settings: Settings) -> list[Envelope]:
    """Every record of wf.events, decoded, from the first offset to the end."""
    topic = Topology.of(settings).events
    c = Consumer(kafka_config(settings, {"group.id": str(uuid.uuid4()),
                  "enable.partition.eof": True, "enable.auto.commit": False,
                  "isolation.level": "read_committed"}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        todo = {p for p, end in ends.items() if end > 0}
        out: list[Envelope] = []
        while todo:
            msg = c.poll(5.0)
            assert msg is not None, "wf.events stopped short of its end offsets"
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                if (msg.offset() or 0) >= ends[msg.partition() or 0]:
                    todo.discard(msg.partition() or 0)
                continue
            assert err is None, err
            out.append(decode(msg.value() or b""))
        return out
    finally:
        c.close()


def test_every_demo_workflow_is_projected_with_its_final_status_and_history(
    deployment: dict[str, str],
) -> None:
    demo = foldflow(deployment, "demo", "--no-up", "--batch", "12", "--timeout", "240")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    settings = Settings(kafka_bootstrap=deployment["FOLDFLOW_KAFKA_BOOTSTRAP"],
                        topic_prefix=deployment["FOLDFLOW_TOPIC_PREFIX"],
                        database_url=deployment["FOLDFLOW_DATABASE_URL"])
    events = read_events(settings)
    history: dict[str, dict[int, Envelope]] = {}
    for env in events:
        assert env.sequence is not None
        seen = history.setdefault(env.workflow_id, {})
        if env.sequence in seen:  # re-emitted: must be the same event
            assert seen[env.sequence].event_id == env.event_id
        seen[env.sequence] = env
    unique = sum(len(h) for h in history.values())
    assert len(history) >= 12

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        def applied() -> bool:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM workflow_events")).scalar_one() \
                    == unique
        wait_until(applied, timeout=120, what=f"{unique} events projected")
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(text(
                "SELECT id, status, last_sequence FROM workflow_instances"))}
            projected = {}
            for r in conn.execute(text("SELECT workflow_id, sequence, event_id, event_type "
                                       "FROM workflow_events ORDER BY workflow_id, sequence")):
                projected.setdefault(r.workflow_id, []).append(
                    (r.sequence, r.event_id, r.event_type))
    finally:
        engine.dispose()

    assert set(rows) == set(history)
    for wid, seen in history.items():
        expected = [(s, e.event_id, e.event_type) for s, e in sorted(seen.items())]
        assert projected[wid] == expected, wid
        assert [s for s, _, _ in expected] == list(range(1, len(expected) + 1)), wid
        assert rows[wid].last_sequence == len(expected)
        last = expected[-1][2]
        if last in TERMINAL_EVENTS:
            assert rows[wid].status == TERMINAL_EVENTS[last], wid
    finished = [w for w, seen in history.items() if seen[max(seen)].event_type in TERMINAL_EVENTS]
    assert len(finished) >= 12  # the demo waits for every workflow it starts

    status = foldflow(deployment, "status", finished[0])
    assert status.returncode == 0, status.stdout + status.stderr
    assert rows[finished[0]].status in status.stdout


def _thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (Linux keeps one per thread, and takes a
    thread id for a process id)."""
    return {os.getpriority(os.PRIO_PROCESS, int(task.name))
            for task in Path(f"/proc/{pid}/task").iterdir()}


def test_the_projector_yields_the_cpu_to_the_services_on_the_workflows_path(
    deployment: dict[str, str],
) -> None:
    pids = Path(deployment["FOLDFLOW_STATE_DIR"]) / "pids"
    running = {name: int((pids / f"{name}.pid").read_text())
               for name in ("orchestrator", "worker", "projector")}
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert _thread_nices(running["orchestrator"]) == {ours}
    assert _thread_nices(running["worker"]) == {ours}
    # every thread, librdkafka's and the exporters' too: they start after the nice
    assert _thread_nices(running["projector"]) == {min(ours + 10, 19)}
