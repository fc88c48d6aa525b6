"""Targets of DESIGN §14, verdicts (met/missed and by how much), ratios to raw Kafka."""

from __future__ import annotations

import pytest

from foldflow.bench.figures import Figure, Target, judge, ratio, targets_for
from foldflow.bench.lines import messages_per_workflow
from foldflow.bench.stats import projected_from_state_mb, projected_rss_mb


def test_a_lower_bound_missed_says_the_shortfall() -> None:
    verdict = judge(190.0, Target(500.0, "higher"))
    assert not verdict.met
    assert verdict.margin == pytest.approx(-0.62)
    assert verdict.text == "missed by 62% (190 of 500)"


def test_a_lower_bound_met_says_the_excess() -> None:
    verdict = judge(600.0, Target(500.0, "higher"))
    assert verdict.met
    assert verdict.text == "met (+20%)"
    assert judge(500.0, Target(500.0, "higher")).text == "met"


def test_an_upper_bound_missed_says_how_far_over() -> None:
    assert judge(30.0, Target(20.0, "lower")).text == "missed by 50%"
    assert judge(137.0, Target(20.0, "lower")).text == "missed: 6.8x the limit"


def test_an_upper_bound_met_says_the_headroom() -> None:
    verdict = judge(15.0, Target(20.0, "lower"))
    assert verdict.met
    assert verdict.margin == pytest.approx(-0.25)
    assert verdict.text == "met (25% headroom)"


def test_ratio_needs_both_figures() -> None:
    assert ratio(250.0, 1000.0) == 0.25
    assert ratio(None, 1000.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_a_figure_without_target_has_no_verdict() -> None:
    figure = Figure("x", "x", 3.0, "ms", baseline=1.5)
    assert figure.verdict is None
    assert figure.ratio == 2.0
    assert Figure("y", "y", None, "ms", Target(1.0, "lower")).verdict is None


def test_three_steps_are_the_design_targets() -> None:
    t = targets_for(3)
    assert t.workflows_per_s.limit == 500.0
    assert t.task_runs_per_s.limit == 1500.0
    assert t.events_per_s.limit == 4000.0  # 8 events per 3-step workflow
    assert t.dispatch_p99_ms == Target(50.0, "lower", "at half load")
    assert t.projection_lag_p99_ms.limit == 250.0
    assert t.start_to_completed_p50_ms == Target(60.0, "lower", "at half load")
    assert t.rss_mb_at_100k.limit == 300.0


def test_other_step_counts_keep_the_task_run_rate() -> None:
    t = targets_for(5)
    assert t.workflows_per_s.limit == 300.0
    assert t.task_runs_per_s.limit == 1500.0
    assert t.events_per_s.limit == 300.0 * 12
    # 11 hops (6 transactions, 5 results) at 60 ms per 7
    assert t.start_to_completed_p50_ms.limit == pytest.approx(60.0 * 11 / 7)


def test_messages_per_workflow() -> None:
    # start + 3 tasks + 3 results + (started, 3 scheduled, 3 completed, completed)
    assert messages_per_workflow(3) == 15
    assert messages_per_workflow(1) == 7


def test_rss_projection_is_linear_and_needs_enough_workflows() -> None:
    assert projected_rss_mb(100.0, 110.0, 10_000) == pytest.approx(200.0)
    assert projected_rss_mb(100.0, 90.0, 10_000) == pytest.approx(100.0)  # never shrinks
    assert projected_rss_mb(100.0, 110.0, 80) is None
    assert projected_rss_mb(100.0, 101.0, 80, min_workflows=10) == pytest.approx(1350.0)


def test_rss_projection_from_the_stored_state_size() -> None:
    # 100k states of 848 B + 200 B overhead: 100 MB on top of the idle RSS
    mb = projected_from_state_mb(110.0, 848.0)
    assert mb == pytest.approx(110.0 + 100_000 * 1048 / 1024 / 1024)
    assert projected_from_state_mb(110.0, None) is None
