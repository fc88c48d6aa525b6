"""A workflow's timeline (Gantt-style) from its event history (pure code).

One row per step in the order steps first appear, plus one row per compensated step:
a bar per attempt (succeeded, failed, or still running), the backoff gap before a retry,
waits (sleep timers, signals, child workflows) and compensation attempts; workflow
events (paused, resumed, the end) are marks on the time axis. The drawing is plain
geometry the template renders as SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Bar", "Mark", "Row", "Tick", "Timeline", "build"]

LABEL_W = 190
CHART_W = 760
ROW_H = 24
AXIS_H = 26
_MIN_BAR_PX = 3
_WORKFLOW_MARKS = {
    "workflow.paused.v1": "paused",
    "workflow.resumed.v1": "resumed",
    "workflow.compensating.v1": "compensating",
    "workflow.completed.v1": "completed",
    "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation failed",
    "workflow.cancelled.v1": "cancelled",
    "workflow.terminated.v1": "terminated",
}


class EventLike(Protocol):
    """What the timeline reads of an event (``foldflow.projections.queries.EventView`` has it)."""

    @property
    def event_type(self) -> str: ...

    @property
    def timestamp(self) -> datetime: ...

    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass
class Bar:
    """One span of a row: ``kind`` is its CSS class, ``title`` its tooltip."""

    kind: str
    start_ms: int
    end_ms: int | None  # None: still open
    title: str
    x: int = 0
    w: int = 0


@dataclass
class Row:
    """One line of the chart: a step, or a step's compensation."""

    label: str
    step_id: str
    compensation: bool = False
    bars: list[Bar] = field(default_factory=list)
    y: int = 0


@dataclass(frozen=True)
class Mark:
    """A workflow event on the axis."""

    label: str
    at_ms: int
    x: int


@dataclass(frozen=True)
class Tick:
    """A gridline with its label (time since the start)."""

    x: int
    label: str


@dataclass(frozen=True)
class Timeline:
    """Rows and marks placed on a ``width`` by ``height`` drawing."""

    rows: tuple[Row, ...]
    marks: tuple[Mark, ...]
    ticks: tuple[Tick, ...]
    width: int
    height: int
    span_ms: int


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _Builder:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, bool], Row] = {}
        self.open: dict[tuple[str, bool], Bar] = {}
        self.marks: list[tuple[str, int]] = []

    def row(self, step_id: str, compensation: bool = False) -> Row:
        key = (step_id, compensation)
        if key not in self.rows:
            label = f"↺ {step_id}" if compensation else step_id
            self.rows[key] = Row(label=label, step_id=step_id, compensation=compensation)
        return self.rows[key]

    def begin(self, step_id: str, kind: str, at: int, title: str, *, comp: bool = False) -> None:
        self.close(step_id, at, comp=comp)
        bar = Bar(kind=kind, start_ms=at, end_ms=None, title=title)
        self.row(step_id, comp).bars.append(bar)
        self.open[(step_id, comp)] = bar

    def close(self, step_id: str, at: int, *, kind: str | None = None, title: str | None = None,
              comp: bool = False) -> None:  # fmt: skip
        bar = self.open.pop((step_id, comp), None)
        if bar is None:
            return
        bar.end_ms = at
        if kind is not None:
            bar.kind = kind
        if title is not None:
            bar.title = title

    def apply(self, event_type: str, at: int, p: Mapping[str, Any]) -> None:
        step = p.get("step_id")
        attempt = p.get("attempt")
        if event_type in _WORKFLOW_MARKS:
            self.marks.append((_WORKFLOW_MARKS[event_type], at))
        if not isinstance(step, str):
            return
        if event_type == "step.scheduled.v1":
            self.close(step, at)  # the backoff before this attempt ends here
            self.begin(step, "running", at, f"{step}: attempt {attempt} ({p.get('task_type')})")
        elif event_type == "step.completed.v1":
            waited = self.open.get((step, False))
            if waited is not None and waited.kind.startswith("wait"):
                self.close(step, at)  # a timer, signal or child: the wait is the bar
            else:
                self.close(step, at, kind="succeeded", title=f"{step}: attempt {attempt} succeeded")
        elif event_type == "step.attempt_failed.v1":
            error = str(p.get("error", ""))[:200]
            what = "timed out" if p.get("timed_out") else "failed"
            self.close(step, at, kind="failed",
                       title=f"{step}: attempt {attempt} {what}: {error}")  # fmt: skip
            retry_at = p.get("retry_at")
            if isinstance(retry_at, int) and p.get("retryable", True):
                self.begin(step, "backoff", at, f"{step}: backoff until attempt {attempt + 1}"
                           if isinstance(attempt, int) else f"{step}: backoff")  # fmt: skip
        elif event_type == "step.failed.v1":
            error = str(p.get("error", ""))[:200]
            self.close(step, at, kind="failed", title=f"{step}: failed: {error}")
        elif event_type == "step.waiting.v1":
            kind = str(p.get("kind", "wait"))
            what = {"sleep": "sleeping", "signal": f"waiting for signal {p.get('signal_name')}",
                    "child": f"waiting for child {p.get('child_workflow_id')}"}.get(kind, kind)
            self.begin(step, f"wait-{kind}", at, f"{step}: {what}")
        elif event_type == "step.skipped.v1":
            self.row(step).bars.append(Bar(kind="skipped", start_ms=at, end_ms=at,
                                           title=f"{step}: skipped ({p.get('reason')})"))
        elif event_type == "compensation.scheduled.v1":
            self.close(step, at, comp=True)
            self.begin(step, "compensating", at, f"compensate {step}: attempt {attempt} "
                       f"({p.get('task_type')})", comp=True)  # fmt: skip
        elif event_type == "compensation.completed.v1":
            self.close(step, at, kind="compensated", title=f"{step}: compensated", comp=True)
        elif event_type == "compensation.attempt_failed.v1":
            self.close(step, at, kind="failed", comp=True,
                       title=f"compensate {step}: attempt {attempt} failed: {p.get('error')}")
            if isinstance(p.get("retry_at"), int):
                self.begin(step, "backoff", at, f"compensate {step}: backoff", comp=True)
        elif event_type == "compensation.failed.v1":
            self.close(step, at, kind="failed", comp=True,
                       title=f"compensate {step}: failed: {p.get('error')}")


def _nice_step(span_ms: int, wanted: int = 8) -> int:
    raw = max(1.0, span_ms / wanted)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)


def _label(ms: int) -> str:
    if ms == 0:
        return "0"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    return f"{ms // 60_000}m{(ms % 60_000) // 1000:02d}s"


def build(events: Iterable[EventLike], *, now: datetime, finished: bool) -> Timeline:
    """The timeline of a history; bars still open end at ``now`` (or at the last event
    when the workflow ``finished``)."""
    builder = _Builder()
    first: int | None = None
    last = 0
    for event in events:
        at = _ms(event.timestamp)
        first = at if first is None else first
        last = max(last, at)
        builder.apply(event.event_type, at, event.payload)
    if first is None:
        return Timeline(rows=(), marks=(), ticks=(), width=LABEL_W + CHART_W, height=AXIS_H,
                        span_ms=0)  # fmt: skip
    end = last if finished else max(last, _ms(now))
    span = max(1, end - first)
    scale = CHART_W / span

    def x_of(at: int) -> int:
        return LABEL_W + round((at - first) * scale)

    rows = sorted(builder.rows.values(), key=lambda r: (r.bars[0].start_ms if r.bars else 0))
    for index, row in enumerate(rows):
        row.y = AXIS_H + index * ROW_H
        for bar in row.bars:
            stop = bar.end_ms if bar.end_ms is not None else end
            bar.x = x_of(bar.start_ms)
            bar.w = max(_MIN_BAR_PX, x_of(stop) - bar.x)
            if bar.end_ms is None and bar.kind == "running":
                bar.title += " (running)"
    step = _nice_step(span)
    ticks = tuple(Tick(x=x_of(first + t), label=_label(t)) for t in range(0, span + 1, step))
    marks = tuple(Mark(label=label, at_ms=at, x=x_of(at)) for label, at in builder.marks)
    return Timeline(rows=tuple(rows), marks=marks, ticks=ticks, width=LABEL_W + CHART_W + 40,
                    height=AXIS_H + len(rows) * ROW_H + 8, span_ms=span)  # fmt: skip
