"""Recorded histories: the decider's output for the examples is pinned byte for byte.

Event ids, sequences and payloads are part of the contract (a replayed input must
re-emit identical events), so any change to them must be deliberate: regenerate with
``FOLDFLOW_RECORD=1 pytest tests/unit/engine/test_recorded_histories.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from engine_harness import Run
from test_examples_run import play

from foldflow.processors.decider import evolve, initial_state
from foldflow.schemas.messages import MESSAGE_TYPES, Envelope

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES: dict[str, tuple[str, Any, tuple[tuple[str, Any], ...]]] = {
    "order-fulfilment": ("order-fulfilment", {"order_id": "o-1", "amount": 12.5}, ()),
    "fan-out-pipeline": ("fan-out-pipeline", {"dataset": "sales", "enrich": True}, ()),
    "approval": ("approval", {"request": "r"}, (("approve", {"approved": True, "by": "ana"}),)),
    "flaky-retry": ("flaky-retry", {"k": 1}, ()),
}


def to_json(event: Envelope) -> dict[str, Any]:
    record = asdict(event)
    record["payload"] = asdict(event.payload)  # type: ignore[arg-type]
    record["event_type"] = event.event_type
    return record


def from_json(record: dict[str, Any]) -> Envelope:
    cls = MESSAGE_TYPES[record.pop("event_type")][0]
    return Envelope(**{**record, "payload": cls(**record["payload"])})


@pytest.mark.parametrize("case", sorted(CASES))
def test_history_matches_the_recording(case: str) -> None:
    name, input, signals = CASES[case]
    run: Run = play(name, input, signals=signals)
    recorded = [to_json(e) for e in run.history]
    path = FIXTURES / f"{case}.events.json"
    if os.environ.get("FOLDFLOW_RECORD") == "1":
        FIXTURES.mkdir(exist_ok=True)
        path.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    assert recorded == json.loads(path.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_recorded_history_replays_to_a_terminal_state(case: str) -> None:
    events = [from_json(r) for r in json.loads((FIXTURES / f"{case}.events.json").read_text())]
    state = initial_state(events[0].workflow_id)
    for event in events:
        state = evolve(state, event)
    assert state.sequence == len(events)
    assert state.status in ("completed", "compensated")
    assert state.timers == {}
