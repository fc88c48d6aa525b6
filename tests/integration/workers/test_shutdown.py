"""`foldflow run worker` as a real process: SIGTERM and SIGKILL mid-task lose nothing.

Either the task finishes within the grace period and its result is published and
committed, or it stays uncommitted and a new worker in the same group gets it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from foldflow.schemas.messages import TaskSucceeded
from foldflow.settings import Settings

WAIT_S = 60.0  # upper bound of every wait

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(settings: Settings, tmp_path: Path) -> Iterator[Spawn]:
    """``spawn_worker(*args)``: a `foldflow run worker` process on the test's topics."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(procs)}.log"
        env = {
            **os.environ,
            "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "FOLDFLOW_PARTITIONS": str(settings.partitions),
            "FOLDFLOW_METRICS_PORT": "0",
            "FOLDFLOW_LOG_LEVEL": "DEBUG",  # "task started" is a debug line
        }
        cmd = [sys.executable, "-m", "foldflow.cli.main", "run", "worker",
               "--session-timeout-ms", "6000", *args]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        proc.log = log  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_for_log(proc: subprocess.Popen[bytes], text: str) -> None:
    """Until the process logged ``text`` (bounded; fails with the log otherwise)."""
    log: Path = proc.log  # type: ignore[attr-defined]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"worker never logged {text!r}:\n{log.read_text(errors='replace')[-3000:]}")


def test_sigterm_lets_the_running_task_finish_publish_and_commit(
    committed_offsets, settings, send, results, spawn_worker
):
    command = send("builtin.sleep", {"seconds": 2})
    proc = spawn_worker("--types", "builtin.sleep", "--grace-period", "30")
    wait_for_log(proc, "task started")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT_S) == 0

    result = results.where(lambda e: e.causation_id == command.event_id)
    assert result is not None and isinstance(result.payload, TaskSucceeded)
    assert sum(o for o in committed_offsets("builtin.sleep").values() if o >= 0) == 1


def test_sigterm_past_the_grace_period_hands_the_task_back(
    committed_offsets, settings, send, results, spawn_worker, start_worker
):
    command = send("builtin.sleep", {"seconds": 3})
    proc = spawn_worker("--types", "builtin.sleep", "--grace-period", "0.2")
    wait_for_log(proc, "task started")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT_S) == 0
    assert all(o < 0 for o in committed_offsets("builtin.sleep").values())

    start_worker(task_types=["builtin.sleep"])
    result = results.where(lambda e: e.causation_id == command.event_id)
    assert result is not None and isinstance(result.payload, TaskSucceeded)


def test_sigkill_mid_task_the_group_redelivers_to_a_new_worker(
    settings, send, results, spawn_worker, start_worker
):
    command = send("builtin.sleep", {"seconds": 3})
    proc = spawn_worker("--types", "builtin.sleep")
    wait_for_log(proc, "task started")

    proc.kill()
    proc.wait(WAIT_S)

    start_worker(task_types=["builtin.sleep"])
    result = results.where(lambda e: e.causation_id == command.event_id)
    assert result is not None and isinstance(result.payload, TaskSucceeded)
    assert result.payload.task_id == command.payload.task_id  # type: ignore[union-attr]


def test_module_option_loads_user_tasks_and_creates_their_topic(
    settings, send, results, spawn_worker, tmp_path
):
    (tmp_path / "custom_tasks.py").write_text(
        "from foldflow.workers import task\n"
        "\n"
        "@task('test.custom')\n"
        "async def custom(input, ctx):\n"
        "    return {'custom': input, 'attempt': ctx.attempt}\n"
    )
    proc = spawn_worker("--module", "custom_tasks", "--types", "test.custom", cwd=tmp_path)
    wait_for_log(proc, '"partitions": [0, 1]')  # its (new) topic exists and is assigned

    command = send("test.custom", {"x": 1}, attempt=3)
    result = results.where(lambda e: e.causation_id == command.event_id)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT_S) == 0

    assert result is not None and isinstance(result.payload, TaskSucceeded)
    assert json.loads(result.payload.output_json) == {"custom": {"x": 1}, "attempt": 3}


def test_a_second_sigterm_stops_without_waiting_and_hands_the_task_back(
    committed_offsets, settings, send, spawn_worker
):
    send("builtin.sleep", {"seconds": 300})
    proc = spawn_worker("--types", "builtin.sleep", "--grace-period", "300")
    wait_for_log(proc, "task started")

    proc.send_signal(signal.SIGTERM)
    wait_for_log(proc, "waiting for in-flight tasks")
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(WAIT_S) == 0  # well before the 300 s grace period
    assert all(o < 0 for o in committed_offsets("builtin.sleep").values())


def test_unknown_types_or_modules_are_refused(spawn_worker):
    assert spawn_worker("--types", "no.such.type").wait(WAIT_S) == 2
    assert spawn_worker("--module", "no_such_module_here").wait(WAIT_S) == 2
