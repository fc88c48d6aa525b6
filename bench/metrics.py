"""The orchestrator's own view of its work: ``foldflow_message_handling_seconds``.

Each input the orchestrator handles is timed into that histogram from the moment it is
taken until its messages are acked; two scrapes of ``/metrics`` around a phase give
inputs/s, the mean time per input and, by Little's law (handling seconds / wall
seconds), how many inputs were in hand on average: about 1.0 for an agent that takes
inputs one at a time and is never idle, more when it works on batches. The orchestrator's
``foldflow_transaction_duration_seconds`` and ``foldflow_transaction_commit_seconds`` give
its commits/s, how long a transaction stays open and how much of that is the commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import httpx

from foldflow.bench.results import AgentLoad

__all__ = ["AgentLoad", "HandlingTotals", "agent_load", "handling_totals", "scrape"]

_SAMPLE = re.compile(
    r"^foldflow_(?P<name>message_handling|transaction_duration|transaction_commit)_seconds_"
    r"(?P<kind>sum|count)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>[0-9.eE+-]+)"
)


@dataclass(frozen=True)
class HandlingTotals:
    """Running totals of one handler: seconds spent and messages handled; for the
    orchestrator also its transactions committed, their seconds open and committing."""

    seconds: float
    count: float
    transactions: float = 0.0
    open_s: float = 0.0
    commit_s: float = 0.0


def handling_totals(text: str, *, handler: str = "orchestrator") -> HandlingTotals:
    """Sum ``foldflow_message_handling_seconds`` over every topic of ``handler``, and
    for the orchestrator also its transaction histograms."""
    totals = dict.fromkeys(("message_handling_sum", "message_handling_count",
                            "transaction_duration_sum", "transaction_duration_count",
                            "transaction_commit_sum"), 0.0)  # fmt: skip
    wanted = f'handler="{handler}"'
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group("name")
        ours = (wanted in (match.group("labels") or "") if name == "message_handling"
                else handler == "orchestrator")  # fmt: skip
        key = f"{name}_{match.group('kind')}"
        if ours and key in totals:
            totals[key] += float(match.group("value"))
    return HandlingTotals(totals["message_handling_sum"], totals["message_handling_count"],
                          transactions=totals["transaction_duration_count"],
                          open_s=totals["transaction_duration_sum"],
                          commit_s=totals["transaction_commit_sum"])  # fmt: skip


def agent_load(before: HandlingTotals, after: HandlingTotals, wall_s: float) -> AgentLoad:
    """What the agent did between two scrapes ``wall_s`` seconds apart."""
    inputs = after.count - before.count
    spent = after.seconds - before.seconds
    commits = after.transactions - before.transactions
    wall = max(wall_s, 1e-9)
    load = AgentLoad(
        inputs_per_s=inputs / wall,
        mean_ms=spent / inputs * 1000 if inputs > 0 else None,
        in_flight=spent / wall,
    )
    if commits <= 0:
        return load
    return replace(load, commits_per_s=commits / wall,
                   transaction_ms=(after.open_s - before.open_s) / commits * 1000,
                   commit_ms=(after.commit_s - before.commit_s) / commits * 1000)


def scrape(port: int, *, handler: str) -> HandlingTotals | None:
    """Read the totals from ``http://127.0.0.1:<port>/metrics``; None when unreachable."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    except httpx.HTTPError:
        return None
    return handling_totals(response.text, handler=handler)
