"""The HTTP load driver's pure parts: pacing, the window's figures, CPU of a process tree."""

from __future__ import annotations

import os

import pytest

from foldflow.bench.http_load import LoadSpec, Outcome, analyse, due, render
from foldflow.bench.proc_cpu import CpuWindow, descendants, tree_cpu_seconds


def test_an_open_loop_sends_the_first_start_at_once_then_one_per_interval() -> None:
    assert [due(4.0, t) for t in (-0.1, 0.0, 0.24, 0.25, 0.26, 0.99, 1.0)] == [
        0, 1, 1, 2, 2, 4, 5,
    ]  # fmt: skip
    assert due(1000.0, 20.0) == 20_001  # no drift from float steps over a long run
    assert due(3.0, 1 / 3) == 2  # exactly on a tick counts it (no 0.999... rounding down)


def test_figures_count_only_answers_inside_the_window() -> None:
    outcomes = [
        Outcome(0.5, 1.5, "202", "w-warmup"),  # answered during the warm-up: left out
        Outcome(1.9, 2.0, "202", "w1"),  # 100 ms
        Outcome(2.0, 2.3, "202", "w2"),  # 300 ms
        Outcome(2.5, 2.7, "503"),
        Outcome(3.0, 3.1, "error:ConnectError"),
        Outcome(3.5, 4.0, "202", "w3"),  # 500 ms
        Outcome(9.0, 10.5, "202", "w-late"),  # answered after the end: left out
    ]
    report = analyse(outcomes, warmup=2.0, end=10.0, mode="closed loop", late=2)
    assert report.window_s == 8.0
    assert report.sent == 7 and report.late == 2
    assert report.accepted == 3 and report.starts_per_s == pytest.approx(3 / 8)
    assert report.by_status == {"202": 3, "503": 1, "error:ConnectError": 1}
    assert report.errors == 2
    assert report.latency_ms is not None
    assert report.latency_ms.p50 == pytest.approx(300.0)
    assert report.latency_ms.max == pytest.approx(500.0)
    # every 202 of the run is kept, for the check that each reached the broker
    assert report.accepted_ids == ("w-warmup", "w1", "w2", "w3", "w-late")
    assert "accepted_ids" not in report.to_json()
    assert "starts/s        0.4 (3 x 202)" in render(report)


def test_no_answers_in_the_window_is_zero_not_an_error() -> None:
    report = analyse([], warmup=1.0, end=1.0, mode="closed loop")
    assert report.starts_per_s == 0.0 and report.latency_ms is None and report.by_status == {}


def test_cpu_per_start_and_cores_of_a_window() -> None:
    report = analyse(
        [Outcome(1.0, 1.1, "202", "w")] * 400, warmup=0.0, end=2.0, mode="m",
        gateway=CpuWindow(cpu_s=0.6, wall_s=2.0), driver=CpuWindow(cpu_s=0.2, wall_s=2.0),
    )  # fmt: skip
    assert report.gateway_cpu_ms_per_start == pytest.approx(1.5)
    assert report.gateway_cores == pytest.approx(0.3)
    assert report.driver_cores == pytest.approx(0.1)
    assert CpuWindow(cpu_s=1.0, wall_s=0.0).cores == 0.0
    assert CpuWindow(cpu_s=1.0, wall_s=1.0).ms_per(0) is None


def test_a_process_tree_is_the_root_and_everything_below_it() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 30: 99}
    assert descendants(parents, [10]) == {10, 11, 12, 13}
    assert descendants(parents, [13]) == {13}
    assert descendants(parents, [10, 20]) == {10, 11, 12, 13, 20}
    assert descendants(parents, [404]) == {404}  # a pid that is gone counts for nothing


def test_this_process_uses_cpu_by_proc() -> None:
    before = tree_cpu_seconds([os.getpid()])
    sum(i * i for i in range(2_000_000))
    assert tree_cpu_seconds([os.getpid()]) > before


@pytest.mark.parametrize(
    "changes",
    [{"concurrency": 0}, {"rate": 0.0}, {"rate": float("inf")}, {"warmup": 5.0},
     {"warmup": -1.0}],
)  # fmt: skip
def test_a_spec_that_cannot_run_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoadSpec(**{"url": "http://x", "key": "k", "definition": "d", "duration": 5.0,
                    **changes})  # type: ignore[arg-type]
