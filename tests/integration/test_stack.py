"""`foldflow stack` against the running local stack (never stops it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from foldflow import stack as local_stack
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
