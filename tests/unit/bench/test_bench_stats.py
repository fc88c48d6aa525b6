"""Percentiles, summaries, rates and the pairing of results with the next task command."""

from __future__ import annotations

import pytest

from foldflow.bench.stats import (
    count_in_window,
    dispatch_samples,
    percentile,
    rate,
    summarize,
    turnaround_samples,
)
from foldflow.bench.watchers import POLL_MAX_S, poll_interval


def test_percentile_interpolates_linearly_like_numpy() -> None:
    samples = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(samples, 0) == 15.0
    assert percentile(samples, 100) == 50.0
    assert percentile(samples, 50) == 35.0
    assert percentile(samples, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile([7.0], 99) == 7.0


def test_percentile_ignores_input_order() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_percentile_of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_of_one_to_hundred() -> None:
    summary = summarize([float(i) for i in range(1, 101)])
    assert summary is not None
    assert summary.count == 100
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p95 == pytest.approx(95.05)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.max == 100.0
    assert summary.mean == pytest.approx(50.5)
    assert summary.at("p99") == summary.p99


def test_no_samples_no_summary() -> None:
    assert summarize([]) is None


def test_rate_over_an_empty_window_is_zero() -> None:
    assert rate(500, 2.0) == 250.0
    assert rate(10, 0.0) == 0.0


def test_count_in_window_is_half_open() -> None:
    assert count_in_window([1, 2, 3, 4], 2, 4) == 2


def test_dispatch_pairs_result_i_with_task_i_plus_1() -> None:
    # task1 @0, result1 @10, task2 @14, result2 @20, task3 @27, result3 @30
    tasks = {"w": [27, 0, 14]}  # order on the topic does not matter
    results = {"w": [20, 10, 30]}
    assert dispatch_samples(results, tasks, steps=3) == [4.0, 7.0]
    assert turnaround_samples(results, tasks, steps=3) == [10.0, 6.0, 3.0]


def test_incomplete_or_redelivered_workflows_are_left_out() -> None:
    tasks = {"short": [0, 5], "dup": [0, 5, 9, 12], "ok": [0, 5, 9]}
    results = {"short": [3, 7], "dup": [3, 7, 10], "ok": [3, 7, 11]}
    assert dispatch_samples(results, tasks, steps=3) == [2.0, 2.0]


def test_one_step_workflows_have_no_dispatch() -> None:
    assert dispatch_samples({"w": [5]}, {"w": [1]}, steps=1) == []
    assert turnaround_samples({"w": [5]}, {"w": [1]}, steps=1) == [4.0]


def test_the_projection_poll_slows_with_the_backlog_only() -> None:
    assert poll_interval(0.02, 0) == 0.02
    assert poll_interval(0.02, 100) == 0.02  # half load: a few dozen rows awaited
    assert poll_interval(0.02, 1_000) == pytest.approx(0.2)
    assert poll_interval(0.02, 1_000_000) == POLL_MAX_S
