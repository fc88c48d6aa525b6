"""`foldflow stack` against the running local stack (never stops it)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from foldflow import stack as local_stack
from foldflow.kafka import kafka_config
from foldflow.settings import Settings


def _foldflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foldflow.cli.main", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_stack_up_twice_in_a_row_is_harmless(stack: Settings) -> None:
    first = _foldflow("stack", "up")
    second = _foldflow("stack", "up")

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Kafka: already up" in second.stdout
    assert "PostgreSQL: already up" in second.stdout
    assert local_stack.kafka_reachable(stack)


def test_status_reports_running(stack: Settings) -> None:
    result = _foldflow("stack", "status")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("running") == 2
    assert all(part.running for part in local_stack.status(stack))


def test_down_from_another_checkout_leaves_the_running_stack_alone(
    stack: Settings, tmp_path: Path
) -> None:
    elsewhere = stack.model_copy(update={"state_dir": tmp_path / ".foldflow"})

    lines = local_stack.down(elsewhere)

    assert all("left alone" in line for line in lines)
    assert local_stack.kafka_reachable(stack)
    assert local_stack.postgres_reachable(stack)


def _free_port_pair() -> int:
    """A port p such that p (broker) and p + 1 (controller) are both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def test_a_cold_broker_starts_keeps_its_data_across_a_restart_and_stops(
    stack: Settings, tmp_path: Path, unique_name: Callable[..., str]
) -> None:
    """The path a fresh machine takes: format, start, restart, stop (on ports of its own)."""
    own = stack.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{_free_port_pair()}",
            "state_dir": tmp_path / "state",
            "kafka_data_dir": tmp_path / "data",
            # the product's default: 256m ran out of heap on a restart once
            "kafka_heap": Settings().kafka_heap,
        }
    )
    topic = unique_name()
    try:
        assert local_stack.up(own)[0].startswith("Kafka: started")
        assert (tmp_path / "data" / "meta.properties").exists()
        admin = AdminClient(kafka_config(own))
        for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
            future.result()
        assert local_stack.up(own)[0].startswith("Kafka: already up")

        assert local_stack.down(own)[0].startswith("Kafka: stopped")
        assert not local_stack.kafka_reachable(own, timeout=1)

        assert local_stack.up(own)[0].startswith("Kafka: started")
        assert topic in admin.list_topics(timeout=10).topics
    finally:
        local_stack.down(own)
    assert local_stack.kafka_reachable(stack)
