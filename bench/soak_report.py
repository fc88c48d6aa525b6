"""What a soak run reports, computed from its observations (pure, no I/O but the writers).

Per interval: workflows started and completed per second, p50/p99 start→completed latency
of the workflows that completed in it, the largest RSS of each service's instances, the
largest consumer lag of each group, the instances killed. Over the run: whether memory
stays flat once steady (:func:`rss_growth` per process that lived long enough), the DLQ
count, and whether every accepted workflow ended exactly once.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from foldflow.bench.stats import percentile

__all__ = [
    "Growth",
    "Interval",
    "Sample",
    "SoakSummary",
    "intervals",
    "markdown",
    "plot",
    "rss_growth",
]

#: A process's memory counts as flat when it grew by less than this over its steady part...
FLAT_MB = 5.0
#: ... or by less than this share of its steady size.
FLAT_SHARE = 0.10


@dataclass(frozen=True)
class Sample:
    """One look at the running services, ``t`` seconds after the load began."""

    t: float
    rss_mb: Mapping[str, float]  # instance name -> VmRSS
    pids: Mapping[str, int]  # instance name -> pid (a restarted instance has a new one)
    lag: Mapping[str, int]  # consumer group (or "projector") -> records behind


@dataclass(frozen=True)
class Interval:
    """One row of the soak table."""

    start_s: float
    end_s: float
    started_per_s: float
    completed_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    rss_mb: Mapping[str, float]  # service -> the largest RSS of its instances
    lag: Mapping[str, int]  # group -> the largest lag seen
    kills: tuple[str, ...]


@dataclass(frozen=True)
class Growth:
    """How one process's RSS moved between the early and the late part of its life."""

    instance: str
    pid: int
    lived_s: float
    early_mb: float
    late_mb: float

    @property
    def growth_mb(self) -> float:
        return self.late_mb - self.early_mb

    @property
    def flat(self) -> bool:
        return self.growth_mb < max(FLAT_MB, FLAT_SHARE * self.early_mb)


@dataclass(frozen=True)
class SoakSummary:
    """The run's totals and verdicts."""

    minutes: float
    accepted: int
    gave_up: int
    ended_once: int
    problems: Sequence[str]
    projection_problems: Sequence[str]
    dlq: int
    kills: int
    context: Sequence[str] = field(default_factory=tuple)


def service_of(instance: str) -> str:
    """``worker-3`` → ``worker``."""
    return instance.split("-")[0]


def intervals(
    *,
    began_ms: float,
    starts_ms: Mapping[str, float],
    ends_ms: Mapping[str, float],
    samples: Sequence[Sample],
    kills: Sequence[tuple[float, str]],
    width_s: float,
    run_s: float,
) -> list[Interval]:
    """Cut the run into ``width_s`` intervals (the last one may be shorter).

    ``starts_ms``/``ends_ms``: wall time (ms) each workflow's first start request began
    and its terminal event was appended; a workflow counts in the interval it ended in.
    """
    rows: list[Interval] = []
    t = 0.0
    while t < run_s and (run_s - t >= 0.1 * width_s or not rows):  # no sliver at the end
        end = min(t + width_s, run_s)
        lo, hi = began_ms + t * 1000, began_ms + end * 1000
        seconds = max(end - t, 1e-9)
        started = sum(1 for ms in starts_ms.values() if lo <= ms < hi)
        latencies = [ends_ms[wf] - starts_ms[wf] for wf in ends_ms
                     if wf in starts_ms and lo <= ends_ms[wf] < hi]  # fmt: skip
        inside = [s for s in samples if t <= s.t < end]
        rss: dict[str, float] = defaultdict(float)
        lag: dict[str, int] = defaultdict(int)
        for sample in inside:
            for name, mb in sample.rss_mb.items():
                rss[service_of(name)] = max(rss[service_of(name)], mb)
            for group, behind in sample.lag.items():
                lag[group] = max(lag[group], behind)
        rows.append(Interval(
            t, end, started / seconds, len(latencies) / seconds,
            percentile(latencies, 50) if latencies else None,
            percentile(latencies, 99) if latencies else None,
            dict(rss), dict(lag),
            tuple(name for at, name in kills if t <= at < end),
        ))  # fmt: skip
        t = end
    return rows


def rss_growth(samples: Sequence[Sample], *, run_s: float, min_share: float = 0.4) -> list[Growth]:
    """For every process (instance + pid) that lived at least ``min_share`` of the run:
    its median RSS over the middle fifth of its life (steady: start-up and warm-up are
    behind it) and over the last fifth."""
    lives: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for sample in samples:
        for name, mb in sample.rss_mb.items():
            pid = sample.pids.get(name)
            if pid is not None:
                lives[(name, pid)].append((sample.t, mb))
    out = []
    for (name, pid), points in sorted(lives.items()):
        lived = points[-1][0] - points[0][0]
        if lived < min_share * run_s or len(points) < 10:
            continue
        fifth = len(points) // 5
        early = statistics.median(mb for _, mb in points[2 * fifth: 3 * fifth])
        late = statistics.median(mb for _, mb in points[-fifth:])
        out.append(Growth(name, pid, lived, early, late))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def markdown(summary: SoakSummary, rows: Sequence[Interval], growth: Sequence[Growth]) -> str:
    """The soak report: context, verdicts, the interval table and the memory table."""
    services = sorted({s for r in rows for s in r.rss_mb})
    groups = sorted({g for r in rows for g in r.lag})
    lines = [f"# Soak: {summary.minutes:g} minutes", "", *summary.context, ""]
    once = summary.ended_once == summary.accepted and not summary.problems
    flat = all(g.flat for g in growth)
    lines += [
        f"- workflows accepted (202): {summary.accepted:,}; gave up after retries: "
        f"{summary.gave_up}",
        f"- ended exactly once, completed: {summary.ended_once:,} "
        f"({'all' if once else 'NOT all'}); problems: {len(summary.problems)}",
        f"- PostgreSQL equals wf.events: "
        f"{'yes' if not summary.projection_problems else 'NO'} "
        f"({len(summary.projection_problems)} differences)",
        f"- instances SIGKILLed: {summary.kills}; DLQ records at the end: {summary.dlq}",
        f"- memory flat once steady: {'yes' if flat else 'NO'} "
        f"({len(growth)} processes that lived ≥ 40% of the run)",
        "",
    ]
    for problem in [*summary.problems, *summary.projection_problems][:20]:
        lines.append(f"  - {problem}")
    header = ["t (min)", "started/s", "completed/s", "p50 ms", "p99 ms",
              *(f"RSS {s} MB" for s in services), *(f"lag {g}" for g in groups), "killed"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"{r.start_s / 60:.1f}-{r.end_s / 60:.1f}", f"{r.started_per_s:.1f}",
                 f"{r.completed_per_s:.1f}", _ms(r.p50_ms), _ms(r.p99_ms),
                 *(f"{r.rss_mb[s]:.0f}" if s in r.rss_mb else "-" for s in services),
                 *(str(r.lag.get(g, "-")) for g in groups), ", ".join(r.kills) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| process | pid | lived (min) | RSS early MB | RSS late MB | growth MB | flat |",
              "|---|---|---|---|---|---|---|"]
    for g in growth:
        lines.append(f"| {g.instance} | {g.pid} | {g.lived_s / 60:.1f} | {g.early_mb:.1f} | "
                     f"{g.late_mb:.1f} | {g.growth_mb:+.1f} | {'yes' if g.flat else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot(
    path: Path,
    *,
    rows: Sequence[Interval],
    samples: Sequence[Sample],
    kills: Sequence[tuple[float, str]],
    title: str,
) -> None:
    """Throughput and p99, RSS of every instance, consumer lag, over time (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    mid = [(r.start_s + r.end_s) / 120 for r in rows]
    top.plot(mid, [r.completed_per_s for r in rows], label="completed/s")
    top.plot(mid, [r.started_per_s for r in rows], label="started/s", linestyle="--")
    top.set_ylabel("workflows/s")
    top.set_ylim(bottom=0)
    p99 = top.twinx()
    p99.plot(mid, [r.p99_ms or 0 for r in rows], color="tab:red", label="p99 ms")
    p99.set_ylabel("p99 start→completed (ms)", color="tab:red")
    p99.set_ylim(bottom=0)
    top.legend(loc="upper left")

    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    last_pid: dict[str, int] = {}
    for sample in samples:
        for name, mb in sample.rss_mb.items():
            pid = sample.pids.get(name, 0)
            if last_pid.setdefault(name, pid) != pid:  # a restart: a gap, not a dip
                lines[name].append((sample.t / 60, math.nan))
                last_pid[name] = pid
            lines[name].append((sample.t / 60, mb))
    for name, points in sorted(lines.items()):
        middle.plot(*zip(*points, strict=True), label=name, linewidth=1)
    middle.set_ylabel("RSS (MB); gaps: restarts")
    middle.set_ylim(bottom=0)
    middle.legend(loc="upper left", fontsize="small", ncol=4)

    lags: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in samples:
        for group, behind in sample.lag.items():
            lags[group].append((sample.t / 60, behind))
    for group, points in sorted(lags.items()):
        bottom.plot(*zip(*points, strict=True), label=group, linewidth=1)
    bottom.set_ylabel("consumer lag (records)")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left", fontsize="small")
    for axis in (top, middle, bottom):
        for at, _name in kills:
            axis.axvline(at / 60, color="grey", alpha=0.3, linewidth=0.8)
    fig.suptitle(title + " (grey lines: SIGKILLs)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
