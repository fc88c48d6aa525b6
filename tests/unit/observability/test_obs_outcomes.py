"""The cause of a workflow's end, from its history: Foldflow's fault or the definition's."""

from __future__ import annotations

import dataclasses

import pytest
from projection_support import (
    SCENARIOS,
    Script,
    bad_input,
    child_failed,
    compensation_lost,
    deadline,
    deadline_with_compensation,
    exhausted,
    refused_at_start,
    saga_after_timeout,
    signal_never_came,
    timed_out,
)

from foldflow.observability.outcomes import (
    AGAINST_OBJECTIVE,
    CAUSES,
    FAILURE_EVENTS,
    OUTCOMES,
    TERMINAL_EVENTS,
    Outcome,
    outcome,
)


def history(script: Script, *, failure_only: bool = False) -> list[tuple[str, dict[str, object]]]:
    pairs = [(e.event_type, dataclasses.asdict(e.payload))  # type: ignore[call-overload]
             for e in script.events]
    if failure_only:
        pairs = [p for p in pairs if p[0] in FAILURE_EVENTS | set(TERMINAL_EVENTS)]
    return pairs


CASES = {
    "completed": ("completed", "none"),
    "retried": ("completed", "none"),
    "signalled": ("completed", "none"),
    "cancelled": ("cancelled", "requested"),
    "terminated": ("terminated", "requested"),
    "failed": ("failed", "business"),
    "compensated": ("compensated", "business"),
}
EXTRA = {
    timed_out: ("failed", "timeout"),
    exhausted: ("failed", "error"),
    saga_after_timeout: ("compensated", "timeout"),
    compensation_lost: ("compensation_failed", "timeout"),
    deadline: ("failed", "deadline"),
    deadline_with_compensation: ("compensated", "deadline"),
    signal_never_came: ("failed", "business"),
    child_failed: ("failed", "child"),
    refused_at_start: ("failed", "invalid"),
    bad_input: ("failed", "invalid"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_recorded_scenario_ends_with_its_cause(name: str) -> None:
    script = SCENARIOS[name]("wf-1", "default")
    assert outcome(history(script)) == Outcome(*CASES[name])
    assert outcome(history(script, failure_only=True)) == Outcome(*CASES[name])


@pytest.mark.parametrize("build", list(EXTRA), ids=lambda f: f.__name__)
def test_failures_are_told_apart_by_their_cause(build: object) -> None:
    script = build("wf-2")  # type: ignore[operator]
    expected = Outcome(*EXTRA[build])  # type: ignore[index]
    assert outcome(history(script)) == expected
    # the projector reads only the failure events back: the same answer
    assert outcome(history(script, failure_only=True)) == expected


def test_only_faults_of_the_system_spend_the_error_budget() -> None:
    assert set(AGAINST_OBJECTIVE) == {"timeout", "error", "deadline"}
    assert set(CAUSES) >= AGAINST_OBJECTIVE
    assert Outcome("failed", "timeout").against_objective
    assert not Outcome("failed", "business").against_objective
    assert not Outcome("completed", "none").against_objective


def test_every_outcome_is_one_the_counters_start_at_zero() -> None:
    outcomes = {outcome(history(SCENARIOS[name]("wf-4", "default"))) for name in CASES}
    outcomes |= {outcome(history(build("wf-5"))) for build in EXTRA}  # type: ignore[operator]
    assert {(o.status, o.cause) for o in outcomes if o} <= set(OUTCOMES)
    assert len(OUTCOMES) == len(set(OUTCOMES))
    assert {status for status, _ in OUTCOMES} == set(TERMINAL_EVENTS.values())


def test_a_running_workflow_has_no_outcome_yet() -> None:
    script = timed_out("wf-3")
    assert outcome(history(script)[:-1]) is None
    assert outcome([]) is None
