"""``foldflow demo``: a batch of the example workflows, run end to end on Kafka.

:func:`plan` decides the batch (pure): which example, which input, which outcome is
expected, which signal the demo sends once the workflow waits for it. :func:`run_batch`
publishes the starts, follows ``wf.events`` (only the partitions of the batch), sends the
signals, and returns each workflow's :class:`~foldflow.follow.Progress`.
:func:`summary_table` compares expected and actual outcomes, with durations and totals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from rich.table import Table

from foldflow.client import ApiError, Client, WaitTimeout
from foldflow.follow import EventFollower, Progress, track
from foldflow.resources import examples_dir
from foldflow.schemas.messages import (
    Envelope,
    SignalWorkflow,
    StartWorkflow,
    StepWaiting,
    dump_json,
)

__all__ = [
    "EXAMPLES_DIR",
    "EXPECTED",
    "WEIGHTS",
    "DemoCase",
    "percentile",
    "plan",
    "read_back",
    "run_batch",
    "summary_table",
]

#: The checkout's examples/, or the copy the installed package ships.
EXAMPLES_DIR = examples_dir()

#: The outcome each example ends in (see the comment at the top of each examples/*.yaml).
EXPECTED: dict[str, str] = {
    "fan-out-pipeline": "completed",
    "flaky-retry": "completed",
    "order-fulfilment": "compensated",
    "approval": "completed",
}


@dataclass(frozen=True)
class DemoCase:
    """One workflow of the batch."""

    workflow_id: str
    definition: str
    input: Any
    expected: str
    signal: tuple[str, Any] | None = None  # sent once the workflow waits for this signal


def _input_for(definition: str, index: int) -> tuple[Any, tuple[str, Any] | None]:
    if definition == "fan-out-pipeline":
        return {"dataset": f"dataset-{index}", "enrich": index % 2 == 0}, None
    if definition == "order-fulfilment":
        return {"order_id": f"order-{index}", "amount": 10 + index}, None
    if definition == "approval":
        approved = index % 2 == 0
        return {"request": f"request-{index}"}, ("approve", {"approved": approved, "by": "demo"})
    return {"run": index}, None


#: The mix of a batch (per 20 workflows): pipelines and sagas most, a few flaky and approval.
WEIGHTS = {"fan-out-pipeline": 9, "order-fulfilment": 6, "flaky-retry": 3, "approval": 2}


def _quota(batch: int, names: Sequence[str]) -> dict[str, int]:
    """Split ``batch`` by :data:`WEIGHTS` (largest remainder), each name at least once."""
    weights = {n: WEIGHTS.get(n, 1) for n in names}
    total = sum(weights.values())
    exact = {n: batch * w / total for n, w in weights.items()}
    counts = {n: max(1, math.floor(x)) if batch >= len(names) else math.floor(x)
              for n, x in exact.items()}
    by_remainder = sorted(names, key=lambda n: (counts[n] - exact[n], -weights[n]))
    i = 0
    while sum(counts.values()) < batch:
        counts[by_remainder[i % len(names)]] += 1
        i += 1
    while sum(counts.values()) > batch:
        largest = max(names, key=lambda n: counts[n])
        counts[largest] -= 1
    return counts


def plan(batch: int, *, run_id: str, available: Sequence[str]) -> list[DemoCase]:
    """``batch`` workflows over the available examples that have an expected outcome,
    split by :data:`WEIGHTS`; every example appears at least once when ``batch`` allows.
    """
    names = [n for n in EXPECTED if n in available]
    if not names or batch < 1:
        return []
    cases: list[DemoCase] = []
    for name, count in _quota(batch, names).items():
        for _ in range(count):
            index = len(cases)
            data, signal = _input_for(name, index)
            cases.append(DemoCase(f"demo-{run_id}-{index:03d}", name, data, EXPECTED[name],
                                  signal))
    return cases


class Publisher(Protocol):
    """What :func:`run_batch` needs of ``producers.Publisher``."""

    def publish_many(self, items: Sequence[tuple[str, Envelope]]) -> object: ...

    def publish(self, topic: str, envelope: Envelope) -> object: ...


def run_batch(
    cases: Sequence[DemoCase],
    *,
    follower: EventFollower,
    publisher: Publisher,
    commands_topic: str,
    envelope: Callable[..., Envelope],
    timeout: float,
    on_progress: Callable[[dict[str, Progress]], None] = lambda _p: None,
) -> dict[str, Progress]:
    """Start every case, send the signals they wait for, follow them until all are terminal
    or ``timeout`` seconds passed; return the progress of each workflow id.

    ``envelope(workflow_id, payload, tenant=...)`` builds a command envelope.
    """
    by_id = {c.workflow_id: c for c in cases}
    progress = {c.workflow_id: Progress(c.workflow_id) for c in cases}
    follower.watch(by_id)  # before the starts: read from the log end as it is now
    publisher.publish_many([
        (commands_topic, envelope(c.workflow_id, StartWorkflow(c.definition, None,
                                                               dump_json(c.input)),
                                  tenant="default"))
        for c in cases
    ])  # fmt: skip
    signalled: set[str] = set()
    deadline = time.monotonic() + timeout
    on_progress(progress)
    while not all(p.terminal for p in progress.values()) and time.monotonic() < deadline:
        events = follower.poll(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        for event in events:
            if event.workflow_id not in progress:
                continue
            progress[event.workflow_id] = track(progress[event.workflow_id], event)
            case = by_id[event.workflow_id]
            waiting = event.payload
            if (case.signal and case.workflow_id not in signalled
                    and isinstance(waiting, StepWaiting) and waiting.kind == "signal"
                    and waiting.signal_name == case.signal[0]):
                name, data = case.signal
                publisher.publish(commands_topic, envelope(
                    case.workflow_id, SignalWorkflow(name, dump_json(data)), tenant="default"))
                signalled.add(case.workflow_id)
        if events:
            on_progress(progress)
    return progress


def read_back(gateway_url: str, api_key: str, workflow_ids: Sequence[str], *,
              wait: float = 15.0, transport: httpx.BaseTransport | None = None) -> dict[str, str]:
    """Each workflow's status as the gateway serves it from the projections (waiting, bounded,
    for a terminal one): the read side's view, to compare with what ``wf.events`` said.
    """
    statuses: dict[str, str] = {}
    with Client(gateway_url, api_key=api_key, timeout=60.0, transport=transport) as client:
        for workflow_id in workflow_ids:
            try:
                statuses[workflow_id] = client.wait(workflow_id, timeout=wait).status
            except WaitTimeout as exc:
                statuses[workflow_id] = exc.workflow.status if exc.workflow else "not found"
            except ApiError as exc:
                statuses[workflow_id] = f"HTTP {exc.status}"
            except httpx.HTTPError as exc:
                statuses[workflow_id] = f"unreachable ({type(exc).__name__})"
    return statuses


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def summary_table(cases: Sequence[DemoCase], progress: dict[str, Progress],
                  projected: dict[str, str] | None = None) -> Table:
    """Expected vs actual outcome per workflow (and, when given, the status the gateway
    reads from the projections), duration, steps, attempts; totals in the footer.
    """
    table = Table(title="Foldflow demo", show_footer=True)
    ok_count = sum(progress[c.workflow_id].status == c.expected for c in cases)
    durations = [d for c in cases if (d := progress[c.workflow_id].duration_s) is not None]
    table.add_column("workflow", footer=f"{len(cases)} workflows")
    table.add_column("definition")
    table.add_column("expected")
    table.add_column("actual", footer=f"{ok_count}/{len(cases)} as expected")
    if projected is not None:
        same = sum(projected.get(c.workflow_id) == progress[c.workflow_id].status for c in cases)
        table.add_column("projection", footer=f"{same}/{len(cases)} agree")
    table.add_column("duration", justify="right",
                     footer=f"p50 {_seconds(percentile(durations, 50))} "
                            f"p95 {_seconds(percentile(durations, 95))}")
    table.add_column("steps", justify="right")
    table.add_column("attempts", justify="right")
    for case in cases:
        p = progress[case.workflow_id]
        actual = f"{_mark(p.status == case.expected)} {p.status}"
        row = [case.workflow_id, case.definition, case.expected, actual]
        if projected is not None:
            seen = projected.get(case.workflow_id, "-")
            row.append(f"{_mark(seen == p.status)} {seen}")
        attempts = f"{p.attempts}" + (f" ({p.failed_attempts} failed)" if p.failed_attempts else "")
        row += [_seconds(p.duration_s), str(len(p.steps_completed)), attempts]
        table.add_row(*row)
    return table


def _mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"
