"""The pure parts of the local stack: rendering the broker config, addresses, tool checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from foldflow import stack as local_stack
from foldflow.settings import Settings


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_are_a_single_kraft_node_on_the_bootstrap_address() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", partitions=4)

    props = _properties(
        local_stack.render_server_properties(settings, data_dir=Path("/data/kafka"))
    )

    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == "/data/kafka"
    assert props["num.partitions"] == "4"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["offsets.topic.num.partitions"] == "50"  # Kafka's default, as before
    assert props["transaction.state.log.min.isr"] == "1"
    assert "controller.quorum.voters" not in props  # --standalone refuses it


def test_rendering_leaves_no_placeholder() -> None:
    text = local_stack.render_server_properties(Settings(), data_dir=Path("/d"))
    assert "${" not in text


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("localhost", ("localhost", 9092)),
        ("PLAINTEXT://broker:29092,other:9092", ("broker", 29092)),
        ("[::1]:9094", ("::1", 9094)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert local_stack.split_host_port(address, 9092) == expected


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {local_stack.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_up_leaves_a_remote_kafka_and_postgresql_alone(tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap="kafka.example:9092",
        database_url="postgresql+psycopg://u:p@db.example:5432/x",
        state_dir=tmp_path,
        cache_dir=tmp_path,
    )

    lines = local_stack.up(settings)

    assert len(lines) == 2
    assert all("only manages the local stack" in line for line in lines)
    assert not (tmp_path / "stack.json").exists()


def test_missing_java_and_maven_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(local_stack.StackError) as excinfo:
        local_stack.check_tools()

    assert "Java 17" in str(excinfo.value)
    assert "Maven" in str(excinfo.value)


def test_one_node_keeps_the_single_broker_layout(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", kafka_data_dir=tmp_path / "d",
                        state_dir=tmp_path / "s")
    [node] = local_stack.local_nodes(settings, 1)
    assert (node.node_id, node.address, node.controller_address) == (
        1, "127.0.0.1:19092", "127.0.0.1:19093")
    assert node.data_dir == tmp_path / "d"
    assert node.run_dir == tmp_path / "s" / "kafka"
    # Rendering the single broker through its node gives the same file as without.
    assert local_stack.render_server_properties(
        settings, data_dir=node.data_dir, node=node, cluster=[node]
    ) == local_stack.render_server_properties(settings, data_dir=node.data_dir)


def test_three_nodes_have_their_own_ports_storage_and_one_quorum(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", kafka_data_dir=tmp_path / "d",
                        state_dir=tmp_path / "s")
    nodes = local_stack.local_nodes(settings, 3)
    assert [n.address for n in nodes] == ["127.0.0.1:19092", "127.0.0.1:19094", "127.0.0.1:19096"]
    assert [n.controller_port for n in nodes] == [19093, 19095, 19097]
    assert len({n.data_dir for n in nodes}) == 3
    assert all(n.data_dir.parent == tmp_path / "d-cluster" for n in nodes)
    assert len({n.run_dir for n in nodes}) == 3

    props = [
        _properties(local_stack.render_server_properties(
            settings, data_dir=n.data_dir, node=n, cluster=nodes))
        for n in nodes
    ]  # fmt: skip
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["controller.quorum.bootstrap.servers"] for p in props} == {
        "127.0.0.1:19093,127.0.0.1:19095,127.0.0.1:19097"}
    assert props[1]["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert props[2]["log.dirs"] == str(tmp_path / "d-cluster" / "node-3")
    for p in props:
        assert "controller.quorum.voters" not in p  # the dynamic quorum of --initial-controllers
        for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                    "share.coordinator.state.topic.replication.factor",
                    "default.replication.factor"):
            assert p[key] == "3", key
        for key in ("transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr",
                    "min.insync.replicas"):
            assert p[key] == "2", key
        assert p["offsets.topic.num.partitions"] == p["transaction.state.log.num.partitions"]
        assert int(p["offsets.topic.num.partitions"]) < 50


@pytest.mark.parametrize(("nodes", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)),
                                                 (5, (3, 2))])
def test_replication_follows_the_node_count(nodes: int, expected: tuple[int, int]) -> None:
    assert local_stack.replication_for(nodes) == expected


@pytest.mark.parametrize(
    ("bootstrap", "local"),
    [
        ("127.0.0.1:9092", True),
        ("127.0.0.1:9092,127.0.0.1:9094,localhost:9096", True),
        ("127.0.0.1:9092,broker2:9092", False),
        ("kafka.example:9092", False),
    ],
)
def test_a_list_of_loopback_addresses_is_a_local_kafka(bootstrap: str, local: bool) -> None:
    assert local_stack.is_local_kafka(Settings(kafka_bootstrap=bootstrap)) is local


def test_the_node_count_is_bounded() -> None:
    with pytest.raises(ValueError, match="kafka_brokers"):
        Settings(kafka_brokers=6)
    with pytest.raises(ValueError, match="kafka_brokers"):
        Settings(kafka_brokers=0)
