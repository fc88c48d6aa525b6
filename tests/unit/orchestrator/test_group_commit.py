"""Group commit: the orchestrator's commit interval stretches only while it is saturated."""

from __future__ import annotations

import pytest

from foldflow.processors.runtime.kafka import transactional_producer_config
from foldflow.processors.runtime.loop import group_commit_interval
from foldflow.settings import Settings


def test_with_idle_time_left_the_configured_interval_holds_however_slow_commits_are() -> None:
    assert group_commit_interval(0.02, busy=0.5, commit_s=0.5) == 0.02


def test_saturated_the_interval_is_four_commits_long() -> None:
    assert group_commit_interval(0.02, busy=0.95, commit_s=0.015) == pytest.approx(0.06)


def test_saturated_with_quick_commits_the_interval_never_shrinks_below_the_setting() -> None:
    assert group_commit_interval(0.02, busy=1.0, commit_s=0.001) == 0.02


def test_the_stretch_stops_at_five_times_the_setting() -> None:
    assert group_commit_interval(0.02, busy=1.0, commit_s=1.0) == pytest.approx(0.1)


def test_a_transactional_request_refused_while_markers_are_written_is_retried_soon() -> None:
    """CONCURRENT_TRANSACTIONS after a commit is retried after retry.backoff.ms: librdkafka's
    100 ms default was the commit tail the bench's transactional hop shows."""
    config = transactional_producer_config(Settings())
    assert config["retry.backoff.ms"] <= 10
