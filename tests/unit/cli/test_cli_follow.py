"""Folding a workflow's events into the progress the CLI and the demo print."""

from __future__ import annotations

from foldflow.follow import Progress, partition_for, track
from foldflow.schemas.messages import (
    Envelope,
    Payload,
    StepAttemptFailed,
    StepCompleted,
    StepScheduled,
    WorkflowCompensated,
    WorkflowCompleted,
    WorkflowStarted,
    event_id_for,
)

WID = "wf-1"


def _event(seq: int, payload: Payload, ts: int) -> Envelope:
    return Envelope(event_id_for(WID, seq), ts, "orchestrator", "c", WID, payload, seq)


def _scheduled(step: str, attempt: int) -> StepScheduled:
    return StepScheduled(step, attempt, f"{WID}:{step}:run:{attempt}", "builtin.echo", "{}", 1000)


def test_a_retried_step_then_completion() -> None:
    events = [
        _event(1, WorkflowStarted("flaky-retry", 1, "{}", "{}"), 1_000),
        _event(2, _scheduled("flaky", 1), 1_000),
        _event(3, StepAttemptFailed("flaky", 1, "t", "boom", True, retry_at=1_100), 1_050),
        _event(4, _scheduled("flaky", 2), 1_100),
        _event(5, StepCompleted("flaky", 2, '{"ok":true}'), 1_200),
        _event(6, _scheduled("after", 1), 1_200),
        _event(7, StepCompleted("after", 1), 1_300),
        _event(8, WorkflowCompleted('{"done":1}'), 3_500),
    ]
    progress = Progress(WID)
    for i, event in enumerate(events):
        assert not progress.terminal, f"terminal too early, before event {i}"
        progress = track(progress, event)
    assert progress.terminal
    assert progress.status == "completed"
    assert progress.definition == "flaky-retry:1"
    assert (progress.attempts, progress.failed_attempts) == (3, 1)
    assert progress.steps_completed == {"flaky", "after"}
    assert progress.output == {"done": 1}
    assert progress.duration_s == 2.5
    assert progress.events == 8


def test_a_compensated_workflow_keeps_its_error_and_has_no_output() -> None:
    progress = track(Progress(WID), _event(1, WorkflowStarted("saga", 2, "{}", "{}"), 10))
    assert (progress.status, progress.duration_s) == ("running", None)
    progress = track(progress, _event(2, WorkflowCompensated("shipment failed"), 20))
    assert progress.status == "compensated"
    assert (progress.error, progress.output) == ("shipment failed", None)


def test_partition_for_spreads_keys_and_is_stable() -> None:
    keys = [f"wf-{i}" for i in range(600)]
    partitions = [partition_for(k, 6) for k in keys]
    assert set(partitions) == set(range(6))
    assert partitions == [partition_for(k.encode(), 6) for k in keys]
