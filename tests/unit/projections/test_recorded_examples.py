"""The example workflows' recorded histories (pinned by the engine tests) projected: the
rows agree with the decider's own fold of the same events, whatever the batch sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from foldflow.processors.decider import evolve, initial_state
from foldflow.processors.decider.state import WorkflowState
from foldflow.projections.apply import InstanceRow, StepRow, fold_batch
from foldflow.schemas.messages import MESSAGE_TYPES, Envelope

RECORDINGS = Path(__file__).resolve().parents[1] / "engine" / "fixtures"
CASES = sorted(p.name.removesuffix(".events.json") for p in RECORDINGS.glob("*.events.json"))


def load(case: str) -> list[Envelope]:
    def envelope(record: dict[str, Any]) -> Envelope:
        cls = MESSAGE_TYPES[record.pop("event_type")][0]
        return Envelope(**{**record, "payload": cls(**record["payload"])})

    return [envelope(r) for r in json.loads((RECORDINGS / f"{case}.events.json").read_text())]


def decider_state(events: list[Envelope]) -> WorkflowState:
    state = initial_state(events[0].workflow_id)
    for event in events:
        state = evolve(state, event)
    return state


def project(events: list[Envelope], size: int) -> tuple[InstanceRow, dict[str, StepRow]]:
    instances: dict[str, InstanceRow] = {}
    steps: dict[tuple[str, str], StepRow] = {}
    for i in range(0, len(events), size):
        fold = fold_batch(instances, steps, events[i : i + size])
        instances.update(fold.instances)
        steps.update(fold.steps)
    (row,) = instances.values()
    return row, {step_id: s for (_, step_id), s in steps.items()}


def test_there_are_recordings() -> None:
    assert len(CASES) >= 4


@pytest.mark.parametrize("size", [1, 4, 1000])
@pytest.mark.parametrize("case", CASES)
def test_projection_agrees_with_the_decider(case: str, size: int) -> None:
    events = load(case)
    state = decider_state(events)
    row, steps = project(events, size)
    assert row.status == state.status
    assert row.last_sequence == state.sequence == len(events)
    assert (row.definition_name, row.definition_version) == (
        state.definition_name, state.definition_version)
    touched = {sid: s for sid, s in state.steps.items() if s.status != "pending"}
    assert set(steps) == set(touched)  # a step appears once something happened to it
    for step_id, s in touched.items():
        projected = steps[step_id]
        assert projected.attempts == s.attempt, step_id
        if s.status in {"succeeded", "failed", "skipped", "waiting", "scheduled"}:
            assert projected.status == s.status, step_id
        if s.status == "succeeded" and s.output_json is not None:
            assert projected.output == json.loads(s.output_json), step_id
        if s.status == "compensated":
            assert projected.compensation_status == "compensated", step_id
            assert projected.compensation_attempts == s.comp_attempt, step_id
