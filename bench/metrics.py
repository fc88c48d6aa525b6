"""The orchestrator's own view of its work: ``foldflow_message_handling_seconds``.

Each input the orchestrator handles is timed into that histogram from the moment it is
taken until its messages are acked; two scrapes of ``/metrics`` around a phase give
inputs/s, the mean time per input and, by Little's law (handling seconds / wall
seconds), how many inputs were in hand on average: about 1.0 for an agent that takes
inputs one at a time and is never idle, more when it works on batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from foldflow.bench.results import AgentLoad

__all__ = ["AgentLoad", "HandlingTotals", "agent_load", "handling_totals", "scrape"]

_SAMPLE = re.compile(
    r'^foldflow_message_handling_seconds_(?P<kind>sum|count)\{(?P<labels>[^}]*)\}\s+'
    r"(?P<value>[0-9.eE+-]+)"
)


@dataclass(frozen=True)
class HandlingTotals:
    """Running totals of one handler: seconds spent and messages handled."""

    seconds: float
    count: float


def handling_totals(text: str, *, handler: str = "orchestrator") -> HandlingTotals:
    """Sum ``foldflow_message_handling_seconds`` over every topic of ``handler``."""
    seconds = count = 0.0
    wanted = f'handler="{handler}"'
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or wanted not in match.group("labels"):
            continue
        if match.group("kind") == "sum":
            seconds += float(match.group("value"))
        else:
            count += float(match.group("value"))
    return HandlingTotals(seconds, count)


def agent_load(before: HandlingTotals, after: HandlingTotals, wall_s: float) -> AgentLoad:
    """What the agent did between two scrapes ``wall_s`` seconds apart."""
    inputs = after.count - before.count
    spent = after.seconds - before.seconds
    wall = max(wall_s, 1e-9)
    return AgentLoad(
        inputs_per_s=inputs / wall,
        mean_ms=spent / inputs * 1000 if inputs > 0 else None,
        in_flight=spent / wall,
    )


def scrape(port: int, *, handler: str) -> HandlingTotals | None:
    """Read the totals from ``http://127.0.0.1:<port>/metrics``; None when unreachable."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    except httpx.HTTPError:
        return None
    return handling_totals(response.text, handler=handler)
