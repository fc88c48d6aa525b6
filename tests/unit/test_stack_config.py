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
