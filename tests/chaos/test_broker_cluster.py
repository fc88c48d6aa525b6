"""A three-broker cluster under failure (DESIGN §11, §12): leader kills under load, two
brokers down.

The module starts its own local cluster (`stack up --brokers 3` on free ports and storage
of its own, so it never touches the session's broker) and one `foldflow up` deployment on
it. Kafka's own replication tests define the durability asked for: RF 3,
``min.insync.replicas=2``, ``acks=all``; SIGKILL the partition leader, bring it back, do
it again; every acked record is still in the log where the broker said it was.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from projection_support import scratch_database
from scale_support import (
    CHAIN,
    AckedStarts,
    LiveTail,
    UpDeployment,
    drain_failure,
    finished,
    free_ports,
    histories,
    leaders,
    log_problems,
    lost,
    projection_differences,
    read_topics,
    under_replicated,
    wait_for,
)
from sqlalchemy import create_engine

from foldflow import stack as local_stack
from foldflow.admin import ensure_topics
from foldflow.kafka import kafka_config
from foldflow.settings import Settings
from foldflow.topics import Topology

NODES = 3
RATE = 3.0  # workflow starts per second during the kills
INTERNAL = ("__consumer_offsets", "__transaction_state")


@pytest.fixture(scope="module")
def cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A local three-node Kafka of this module's own (ports, storage, state dir)."""
    root = tmp_path_factory.mktemp("cluster")
    base = free_ports(2 * NODES)
    settings = stack.model_copy(update={
        "kafka_bootstrap": ",".join(f"127.0.0.1:{base + 2 * k}" for k in range(NODES)),
        "kafka_brokers": NODES,
        "kafka_data_dir": root / "kafka-data",
        "state_dir": root / "state",
        "kafka_heap": Settings().kafka_heap,
        "topic_prefix": "",
        "replication_factor": None,
        "min_insync_replicas": None,
    })  # fmt: skip
    try:
        began = time.monotonic()
        lines = local_stack.up(settings)
        assert lines[0].startswith(f"Kafka: {NODES} nodes started"), lines
        print(f"\n{NODES} nodes up in {time.monotonic() - began:.0f}s")
        yield settings
    finally:
        pids = list(local_stack.managed_nodes(settings).values())
        stopped = local_stack.down(settings)
        assert any(line.startswith(f"Kafka: stopped {len(pids)} node(s)") for line in stopped)
    assert not any(local_stack.pid_alive(pid) for pid in pids)


@pytest.fixture(scope="module")
def deployment(cluster: Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[UpDeployment]:  # fmt: skip
    """`foldflow up` (one instance of each service) on the cluster; the chain registered."""
    with scratch_database(cluster.database_url) as database:
        d = UpDeployment.create(
            kafka_bootstrap=cluster.kafka_bootstrap, database_url=database,
            state_dir=cluster.state_dir,
            extra={"FOLDFLOW_KAFKA_BROKERS": str(NODES),
                   "FOLDFLOW_KAFKA_DATA_DIR": str(cluster.kafka_data_dir),
                   "FOLDFLOW_GATEWAY_KAFKA_TIMEOUT_S": "5"},
        )  # fmt: skip
        try:
            began = time.monotonic()
            up = d.must("up", timeout=600)
            print(f"`foldflow up` on the cluster in {time.monotonic() - began:.0f}s")
            assert f"Kafka: {NODES} nodes already up" in up, up
            chain = tmp_path_factory.mktemp("defs") / "chain.yaml"
            chain.write_text(yaml.safe_dump(CHAIN))
            d.must("definitions", "register", str(chain))
            yield d
        finally:
            d.foldflow("down", timeout=180)


def _topics(admin: AdminClient, prefix: str) -> list[str]:
    return sorted(t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix + "wf."))


def _leaders(admin: AdminClient, topics: list[str]) -> Counter[int]:
    found: list[Counter[int]] = []
    wait_for(lambda: bool(found.append(leaders(admin, topics)) or True), timeout=60,
             what="the partition leaders", every=0.5)  # fmt: skip
    return found[-1]


def _kill_node(cluster: Settings, node_id: int) -> None:
    [node] = [n for n in local_stack.local_nodes(cluster, NODES) if n.node_id == node_id]
    pid = local_stack.node_pid(node)
    assert pid is not None, f"node {node_id} is not running"
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # the module started the nodes: reap them
    wait_for(lambda: not local_stack.pid_alive(pid), timeout=30, what=f"node {node_id} dead",
             every=0.2)  # fmt: skip


def test_three_nodes_replicate_every_topic_three_times_with_min_isr_two(
    cluster: Settings, deployment: UpDeployment
) -> None:
    status = deployment.must("stack", "status")
    for k in range(1, NODES + 1):
        assert f"Kafka node {k}" in status, status
    assert status.count("running") >= NODES + 1  # every node and PostgreSQL

    admin = AdminClient(kafka_config(cluster))
    settings = deployment.settings()
    outcomes = ensure_topics(settings)  # what `foldflow topics ensure` does, again
    assert {(o.replication_factor, o.min_insync_replicas) for o in outcomes} == {(3, 2)}
    assert {o.outcome for o in outcomes} == {"ok"}, [o for o in outcomes if o.note]

    # the transaction state topic exists once a transactional producer has started
    producer = Producer(kafka_config(cluster, {
                         "transactional.id": f"test-{uuid.uuid4().hex[:8]}"}))  # fmt: skip
    producer.init_transactions(60)
    wait_for(lambda: all(t in admin.list_topics(timeout=10).topics for t in INTERNAL),
             timeout=60, what="the internal topics")  # fmt: skip
    metadata = admin.list_topics(timeout=10)
    for topic in INTERNAL:
        replicas = {len(p.replicas) for p in metadata.topics[topic].partitions.values()}
        assert replicas == {3}, topic
    broker = ConfigResource(ResourceType.BROKER, "1")
    config = admin.describe_configs([broker])[broker].result()
    assert config["transaction.state.log.min.isr"].value == "2"
    assert config["min.insync.replicas"].value == "2"


def test_killing_the_leader_under_load_loses_no_acked_record_and_ends_each_workflow_once(
    cluster: Settings, deployment: UpDeployment
) -> None:
    settings = deployment.settings()
    topology = Topology.of(settings)
    admin = AdminClient(kafka_config(cluster))
    topics = _topics(admin, settings.topic_prefix)
    began = time.monotonic()
    phases: list[tuple[str, float]] = []

    tail = LiveTail(cluster, topics).start()
    load = AckedStarts(settings, rate=RATE).start()
    killed: list[int] = []
    try:
        for _ in range(2):
            time.sleep(8)
            counts = _leaders(admin, topics)
            victim = max((n for n in counts if n not in killed), key=lambda n: counts[n])
            _kill_node(cluster, victim)
            killed.append(victim)
            phases.append((f"killed node {victim} (led {counts[victim]} of "
                           f"{sum(counts.values())})", round(time.monotonic() - began, 1)))
            wait_for(lambda v=victim: leaders(admin, topics)[v] == 0, timeout=60,
                     what=f"leadership moved off node {victim}")  # fmt: skip
            phases.append(("leaders moved", round(time.monotonic() - began, 1)))
            time.sleep(4)  # the load goes on with one node down
            lines = local_stack.up(cluster)
            assert f"started node(s) {victim} again" in lines[0], lines
            wait_for(lambda: not under_replicated(admin, [*topics, "__consumer_offsets"], 3),
                     timeout=120, what=f"node {victim} caught up (ISR 3 everywhere)")  # fmt: skip
            phases.append((f"node {victim} back in every ISR",
                           round(time.monotonic() - began, 1)))  # fmt: skip
        time.sleep(4)
    except BaseException:
        tail.stop()
        raise
    finally:
        load.stop()
    phases.append(("load stopped", round(time.monotonic() - began, 1)))
    report = f"{len(load.acked)} acked, {len(load.failed)} not acked; phases {phases}"
    print(report)
    assert len(killed) == 2 and killed[0] != killed[1]
    assert len(load.acked) >= RATE * 20, report

    ids = set(load.acked)
    check = finished(cluster, topology.events, ids)
    try:
        wait_for(check, timeout=300, what="every acked start ended in wf.events", every=3)
    except AssertionError as exc:
        raise drain_failure(exc, deployment, check, report, "leader-kill") from None
    finally:
        tail.stop()
    records = read_topics(cluster, topics)
    assert lost(load.acked.values(), tail.seen, records, topology.commands) == []
    by_workflow = histories(r for r in records if r.topic == topology.events)
    assert log_problems(by_workflow, ids) == []
    # a start the producer gave up on may still have landed (librdkafka retries until
    # message.timeout.ms); it then ends once too, and nothing else is in the log
    assert set(by_workflow) <= ids | set(load.failed)
    assert log_problems(by_workflow, set(by_workflow) & set(load.failed)) == []

    engine = create_engine(settings.database_url)
    try:
        wait_for(lambda: projection_differences(engine, by_workflow, ids) == [], timeout=120,
                 what="PostgreSQL equal to wf.events", every=2)  # fmt: skip
    finally:
        engine.dispose()
    ps = deployment.foldflow("ps")
    assert ps.returncode == 0, f"a service did not survive a broker kill:\n{ps.stdout}"


def test_with_two_brokers_down_writes_fail_with_503_naming_kafka_and_recover(
    cluster: Settings, deployment: UpDeployment
) -> None:
    admin = AdminClient(kafka_config(cluster))
    settings = deployment.settings()
    [url] = deployment.gateway_urls(1)
    client = httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {deployment.api_key}"})  # fmt: skip
    body = {"definition": CHAIN["name"], "input": {"n": 1}}

    def start(key: str) -> httpx.Response:
        return client.post("/v1/workflows", json=body, headers={"Idempotency-Key": key})

    before = start(f"before-{uuid.uuid4().hex}")
    assert before.status_code == 202, before.text

    down = [1, 2]
    for node in down:
        _kill_node(cluster, node)
    key = f"outage-{uuid.uuid4().hex}"
    asked = time.monotonic()
    refused = start(key)
    took = time.monotonic() - asked
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["dependency"] == "kafka", problem
    assert "kafka" in problem["title"].lower()
    assert "Retry-After" in refused.headers
    assert took < 5 + 10, f"the 503 took {took:.1f}s"  # the gateway's Kafka timeout, not a hang

    lines = local_stack.start_cluster(cluster, NODES, report=lambda _l: None, only=[down[0]])
    assert set(lines) == {down[0], 3}
    answers: list[int] = []
    deadline = time.monotonic() + 120
    while True:  # a client retrying with the same Idempotency-Key
        retried = start(key)
        answers.append(retried.status_code)
        if retried.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert retried.status_code == 202, (answers, retried.text)
    workflow = retried.json()["id"]

    # the last node comes back too; then every workflow of this test ends exactly once
    local_stack.up(cluster)
    topics = _topics(admin, settings.topic_prefix)
    wait_for(lambda: not under_replicated(admin, topics, 3), timeout=120,
             what="every node back in every ISR")  # fmt: skip
    restarted = deployment.must("up")  # a supervisor: starts whatever exited meanwhile
    ids = {before.json()["id"], workflow}
    topology = Topology.of(settings)
    check = finished(cluster, topology.events, ids)
    try:
        wait_for(check, timeout=120, what="both workflows ended", every=2)
    except AssertionError as exc:
        raise drain_failure(exc, deployment, check, restarted, "two-down") from None
    by_workflow = histories(r for r in read_topics(cluster, [topology.events]))
    assert log_problems(by_workflow, ids) == []
    print(f"answers while one node came back: {answers}; `up` afterwards:\n{restarted}")


def test_stack_status_shows_each_node_running(cluster: Settings) -> None:
    """`stack status` sees each node again; the module's teardown checks that `stack down`
    stops them all."""
    rows = local_stack.status(cluster)
    nodes = [r for r in rows if r.name.startswith("Kafka node")]
    assert [r.name for r in nodes] == [f"Kafka node {k}" for k in range(1, NODES + 1)]
    assert all(r.running and r.managed for r in nodes), nodes
