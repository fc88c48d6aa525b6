"""Pure statistics of a benchmark run: percentiles, latency summaries, rates.

Nothing here touches a clock or the network, so every figure the report shows can be
checked by a unit test from made-up samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Below this many held workflows the RSS slope is noise and nothing is projected.
MIN_WORKFLOWS_TO_PROJECT = 5_000
#: What one entry of the orchestrator's in-memory store costs besides the state bytes (CPython: a
#: dict slot, a bytes key and a bytes value object), for the projection from state size.
ENTRY_OVERHEAD_BYTES = 200
#: The performance target: the orchestrator's memory at this many workflows.
RSS_TARGET_WORKFLOWS = 100_000

__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "MIN_WORKFLOWS_TO_PROJECT",
    "RSS_TARGET_WORKFLOWS",
    "LatencySummary",
    "count_in_window",
    "dispatch_samples",
    "percentile",
    "projected_from_state_mb",
    "projected_rss_mb",
    "rate",
    "summarize",
    "turnaround_samples",
]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples`` by linear interpolation.

    The same definition as ``numpy.percentile``'s default (``linear``): rank
    ``q/100 * (n-1)`` on the sorted samples. Raises ``ValueError`` on no samples or a
    ``q`` outside 0..100.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(samples)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one latency, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def at(self, q: str) -> float:
        """The figure named ``q`` (``"p50"``, ``"p95"``, ``"p99"``, ``"max"`` or ``"mean"``)."""
        value: float = getattr(self, q)
        return value


def summarize(samples: Sequence[float]) -> LatencySummary | None:
    """p50/p95/p99/max/mean of ``samples`` (ms), or None when there are none."""
    if not samples:
        return None
    return LatencySummary(
        count=len(samples),
        p50=percentile(samples, 50),
        p95=percentile(samples, 95),
        p99=percentile(samples, 99),
        max=float(max(samples)),
        mean=sum(samples) / len(samples),
    )


def rate(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds`` (0.0 for an empty or zero-length window)."""
    if seconds <= 0:
        return 0.0
    return count / seconds


def dispatch_samples(
    results: Mapping[str, Sequence[int]],
    tasks: Mapping[str, Sequence[int]],
    *,
    steps: int,
) -> list[float]:
    """Per-step dispatch latencies (ms) of sequential workflows of ``steps`` steps.

    ``results`` and ``tasks`` map a workflow id to the Kafka timestamps of its
    ``task.succeeded.v1`` records on ``wf.results`` and its ``task.execute.v1`` records on
    ``wf.tasks.*``. In a sequential workflow that never retries, result *i* causes task
    command *i+1*, so each workflow gives ``steps - 1`` samples ``task[i+1] - result[i]``.
    A workflow whose counts are not exactly ``steps`` (a redelivery, a retry, a workflow
    still running) is left out rather than guessed at.
    """
    samples: list[float] = []
    for workflow_id, result_times in results.items():
        task_times = tasks.get(workflow_id, ())
        if len(result_times) != steps or len(task_times) != steps:
            continue
        done = sorted(result_times)
        sent = sorted(task_times)
        samples.extend(float(sent[i + 1] - done[i]) for i in range(steps - 1))
    return samples


def turnaround_samples(
    results: Mapping[str, Sequence[int]],
    tasks: Mapping[str, Sequence[int]],
    *,
    steps: int,
) -> list[float]:
    """Worker turnaround (ms): task command *i* on Kafka → its result on Kafka.

    The same pairing rules as :func:`dispatch_samples`: ``steps`` samples per workflow
    with exactly ``steps`` commands and results.
    """
    samples: list[float] = []
    for workflow_id, result_times in results.items():
        task_times = tasks.get(workflow_id, ())
        if len(result_times) != steps or len(task_times) != steps:
            continue
        samples.extend(
            float(r - t) for r, t in zip(sorted(result_times), sorted(task_times), strict=True)
        )
    return samples


def count_in_window(timestamps: Iterable[float], start: float, end: float) -> int:
    """How many ``timestamps`` fall in ``[start, end)``."""
    return sum(1 for t in timestamps if start <= t < end)


def projected_rss_mb(
    idle_mb: float,
    end_mb: float,
    workflows: int,
    *,
    target_workflows: int = RSS_TARGET_WORKFLOWS,
    min_workflows: int = MIN_WORKFLOWS_TO_PROJECT,
) -> float | None:
    """Linear projection of RSS to ``target_workflows`` held states.

    ``idle_mb`` is the RSS before the measured workflows, ``end_mb`` with ``workflows``
    more states in the table. None below ``min_workflows``: with a few hundred states the
    slope is allocator noise, not state size.
    """
    if workflows < max(1, min_workflows):
        return None
    per_workflow = max(0.0, end_mb - idle_mb) / workflows
    return idle_mb + per_workflow * target_workflows


def projected_from_state_mb(
    idle_mb: float,
    state_bytes: float | None,
    *,
    target_workflows: int = RSS_TARGET_WORKFLOWS,
    entry_overhead: int = ENTRY_OVERHEAD_BYTES,
) -> float | None:
    """RSS at ``target_workflows`` if each held state costs its bytes plus the in-memory
    store's per-entry overhead (a dict slot and two ``bytes`` objects)."""
    if not state_bytes:
        return None
    return idle_mb + target_workflows * (state_bytes + entry_overhead) / (1024 * 1024)
