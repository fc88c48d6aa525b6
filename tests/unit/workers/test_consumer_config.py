"""The workers' consumer group settings."""

from __future__ import annotations

from foldflow.definitions import DEFAULT_ATTEMPT_TIMEOUT_MS
from foldflow.settings import Settings
from foldflow.workers.consumer import consumer_config


def test_a_dead_workers_partitions_move_well_inside_the_default_attempt_timeout() -> None:
    """librdkafka's 45 s session outlived the 30 s attempt timeout: a SIGKILLed worker's
    attempts all timed out before anyone fetched them again."""
    config = consumer_config(Settings(), "builtin.echo")
    assert config["session.timeout.ms"] * 4 <= DEFAULT_ATTEMPT_TIMEOUT_MS
    assert config["heartbeat.interval.ms"] * 3 <= config["session.timeout.ms"]
    assert "group.instance.id" not in config  # see docs/operations.md: measured, not needed


def test_the_session_timeout_is_a_setting() -> None:
    config = consumer_config(Settings(worker_session_timeout_ms=10_000), "builtin.echo")
    assert (config["session.timeout.ms"], config["heartbeat.interval.ms"]) == (10_000, 2_500)
