"""The figures a run reports, the performance targets beside them, and the verdicts.

Pure: a :class:`Figure` holds a measured value, its target (if there is one) and
the comparable raw-Kafka figure of the same run; :func:`judge` says whether the target is
met and by how much; :func:`ratio` relates a figure to the raw-Kafka baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Better",
    "Figure",
    "Target",
    "Targets",
    "Verdict",
    "judge",
    "ratio",
    "targets_for",
]

Better = Literal["higher", "lower"]

#: The performance targets (docs/architecture.md), on a 2-core machine with everything sharing it.
TARGET_WORKFLOWS_PER_S_3_STEPS = 500.0
TARGET_TASK_RUNS_PER_S = 1500.0
TARGET_DISPATCH_P99_MS = 50.0
TARGET_ALONE_INPUTS_PER_S = 2000.0
TARGET_ALONE_CPU_MS_PER_INPUT = 0.5
TARGET_PROJECTION_LAG_P99_MS = 250.0
TARGET_START_TO_COMPLETED_P50_MS_3_STEPS = 60.0
TARGET_RSS_MB_AT_100K = 300.0


@dataclass(frozen=True)
class Target:
    """A target bound: ``higher`` means at least ``limit``, ``lower`` at most."""

    limit: float
    better: Better
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """Whether a figure meets its target; ``margin`` is relative (0.25 = 25 % off)."""

    met: bool
    margin: float
    text: str


@dataclass(frozen=True)
class Figure:
    """One line of the report.

    ``baseline`` is the raw-Kafka figure of the same run this one is compared with
    (``baseline_label`` names it); ``load`` says under which load it was measured.
    """

    key: str
    label: str
    value: float | None
    unit: str
    target: Target | None = None
    baseline: float | None = None
    baseline_label: str = ""
    load: str = ""

    @property
    def verdict(self) -> Verdict | None:
        """The verdict against the target, None without a target or a value."""
        if self.target is None or self.value is None:
            return None
        return judge(self.value, self.target)

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, None when either is missing."""
        return ratio(self.value, self.baseline)


def judge(value: float, target: Target) -> Verdict:
    """Compare ``value`` with ``target`` and say how far off it is.

    For a lower bound the margin is the shortfall as a share of the target (190 of 500
    is 62 % short); for an upper bound it is the excess as a share of the limit (30 ms
    against 20 ms is 50 % over).
    """
    limit = target.limit
    if target.better == "higher":
        met = value >= limit
        margin = (value - limit) / limit if limit else 0.0
        if met:
            text = f"met (+{margin:.0%})" if margin >= 0.005 else "met"
        else:
            text = f"missed by {-margin:.0%} ({value:,.4g} of {limit:,.4g})"
    else:
        met = value <= limit
        margin = (value - limit) / limit if limit else 0.0
        if met:
            text = f"met ({-margin:.0%} headroom)" if margin <= -0.005 else "met"
        elif value >= 2 * limit:
            text = f"missed: {value / limit:.1f}x the limit"
        else:
            text = f"missed by {margin:.0%}"
    return Verdict(met=met, margin=margin, text=text)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


@dataclass(frozen=True)
class Targets:
    """The performance targets, scaled to a run's number of steps ``k``."""

    workflows_per_s: Target
    task_runs_per_s: Target
    events_per_s: Target
    dispatch_p99_ms: Target
    projection_lag_p99_ms: Target
    start_to_completed_p50_ms: Target
    rss_mb_at_100k: Target
    alone_inputs_per_s: Target = Target(TARGET_ALONE_INPUTS_PER_S, "higher", "at saturation")
    alone_cpu_ms_per_input: Target = Target(TARGET_ALONE_CPU_MS_PER_INPUT, "lower")


def targets_for(steps: int) -> Targets:
    """Targets for workflows of ``steps`` no-op steps.

    The target is 500 three-step workflows/s, i.e. 1,500 task runs/s; for another
    step count the task-run rate is what stays fixed, so the workflow target is
    1,500 / k. Events/s has no target of its own: a k-step sequential workflow writes
    2k + 2 events, so the implied target is that many times the workflow target. A
    workflow's start→completed crosses 2k + 1 hops (k + 1 orchestrator transactions, k
    results): its target is 60 ms for 3 steps, 60 / 7 ms a hop for another count.
    """
    k = max(1, steps)
    wf_target = TARGET_TASK_RUNS_PER_S / k
    scaled = "" if k == 3 else f"1,500 task runs/s / {k} steps"
    return Targets(
        workflows_per_s=Target(wf_target, "higher", scaled),
        task_runs_per_s=Target(TARGET_TASK_RUNS_PER_S, "higher"),
        events_per_s=Target(wf_target * (2 * k + 2), "higher", "implied"),
        dispatch_p99_ms=Target(TARGET_DISPATCH_P99_MS, "lower", "at half load"),
        projection_lag_p99_ms=Target(TARGET_PROJECTION_LAG_P99_MS, "lower", "at half load"),
        start_to_completed_p50_ms=Target(
            TARGET_START_TO_COMPLETED_P50_MS_3_STEPS * (2 * k + 1) / 7, "lower",
            "at half load" if k == 3 else f"at half load; 60 ms / 7 hops x {2 * k + 1}"),
        rss_mb_at_100k=Target(TARGET_RSS_MB_AT_100K, "lower", "100k active workflows"),
    )
