"""From what the observers saw to a :class:`~foldflow.bench.results.PhaseResult` (pure).

Rates are counted in the phase's steady window: from ``warmup`` seconds after the phase
began to the moment it stopped starting workflows (the ramp-up and the drain are left
out); latencies come from the workflows started inside that window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from foldflow.bench.results import Completion, PhaseResult, PhaseWindow
from foldflow.bench.stats import (
    count_in_window,
    dispatch_samples,
    rate,
    summarize,
    turnaround_samples,
)

__all__ = ["Observations", "analyse_phase", "steady_window"]

MIN_WINDOW_MS = 1000.0


@dataclass(frozen=True)
class Observations:
    """Everything the run recorded, shared by all phases.

    ``starts``: workflow id → start (wall ms); ``completions``: terminal events;
    ``seen``: workflow id → first poll that saw its terminal row (wall ms);
    ``event_times``: Kafka ms of every wf.events record; ``results``/``tasks``:
    workflow id → Kafka ms of its ``task.succeeded.v1`` / ``task.execute.v1`` records;
    ``other_times``: Kafka ms of every other wf.* record (commands, results, tasks).
    """

    starts: Mapping[str, float]
    completions: Mapping[str, Completion]
    seen: Mapping[str, float]
    event_times: Sequence[int]
    results: Mapping[str, Sequence[int]]
    tasks: Mapping[str, Sequence[int]]
    other_times: Sequence[int]


def steady_window(window: PhaseWindow, warmup_s: float,
                  completions: Sequence[float] = ()) -> tuple[float, float]:
    """The ``[start, end)`` (ms) rates are counted in.

    Normally ``[began + warmup, stopped)``; when that is shorter than a second (a tiny
    run), the whole phase up to its last completion instead.
    """
    start = window.started_ms + warmup_s * 1000
    end = window.stopped_ms
    if end - start >= MIN_WINDOW_MS:
        return start, end
    last = max(completions, default=window.stopped_ms)
    return window.started_ms, max(last, window.stopped_ms)


def analyse_phase(
    window: PhaseWindow, obs: Observations, *, steps: int, warmup_s: float
) -> PhaseResult:
    """The figures of one phase."""
    ids = window.workflow_ids
    done = {w: obs.completions[w] for w in ids if w in obs.completions}
    completed = [w for w, c in done.items() if c.status == "completed"]
    start, end = steady_window(window, warmup_s, [c.kafka_ms for c in done.values()])
    seconds = (end - start) / 1000
    # latencies: workflows that started inside the steady window
    measured = [w for w in completed if start <= obs.starts[w] < end] or completed
    measured_set = set(measured)
    results = {w: obs.results[w] for w in measured if w in obs.results}
    tasks = {w: obs.tasks[w] for w in measured if w in obs.tasks}
    finished_in_window = sum(1 for c in done.values()
                             if c.status == "completed" and start <= c.kafka_ms < end)
    events = count_in_window(obs.event_times, start, end)
    others = count_in_window(obs.other_times, start, end)
    task_runs = sum(count_in_window(times, start, end) for times in obs.results.values())
    return PhaseResult(
        name=window.name,
        mode=window.mode,
        seconds=(window.stopped_ms - window.started_ms) / 1000,
        started=len(ids),
        completed=len(completed),
        failed=len(ids) - len(completed),
        workflows_per_s=rate(finished_in_window, seconds),
        task_runs_per_s=rate(task_runs, seconds),
        events_per_s=rate(events, seconds),
        kafka_messages_per_s=rate(events + others, seconds),
        start_to_completed_ms=summarize(
            [obs.completions[w].kafka_ms - obs.starts[w] for w in measured]
        ),
        dispatch_ms=summarize(dispatch_samples(results, tasks, steps=steps)),
        turnaround_ms=summarize(turnaround_samples(results, tasks, steps=steps)),
        projection_lag_ms=summarize(
            [obs.seen[w] - obs.completions[w].kafka_ms for w in measured_set if w in obs.seen]
        ),
    )
