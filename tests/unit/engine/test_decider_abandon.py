"""``abandon``: the decision that fails a workflow whose outputs cannot be produced."""

from __future__ import annotations

from engine_harness import Run

from foldflow.definitions import Definition
from foldflow.processors.decider import abandon, evolve, initial_state, plan_events
from foldflow.processors.decider.failure import MAX_ERROR_CHARS
from foldflow.schemas.messages import ChildFinished, PauseWorkflow, StartWorkflow, WorkflowFailed
from foldflow.topics import Topology

CHAIN = Definition.from_data({
    "name": "chain",
    "steps": [{"id": "a", "task": "t.a"}, {"id": "b", "task": "t.b", "after": ["a"]}],
})  # fmt: skip


def test_a_running_workflow_fails_at_once_with_the_error() -> None:
    run = Run(CHAIN)
    run.start()
    message = run.message(PauseWorkflow("p"))
    events = abandon(run.state, message, run.now, error="too big")
    assert [e.payload for e in events] == [WorkflowFailed(error="too big")]
    assert events[0].sequence == run.state.sequence + 1
    assert events[0].causation_id == message.event_id
    state = evolve(run.state, events[0])
    assert state.status == "failed" and state.pending_timers == {}
    assert abandon(state, run.message(PauseWorkflow("p")), run.now, error="x") == []  # ended
    # the same state, input and error give the same events
    assert abandon(run.state, message, run.now, error="too big") == events


def test_a_start_that_cannot_be_produced_fails_before_the_workflow_started() -> None:
    run = Run(CHAIN)
    start = run.message(run_start_payload())
    (event,) = abandon(initial_state("wf-1"), start, run.now, error="input too large")
    assert event.sequence == 1 and isinstance(event.payload, WorkflowFailed)


def test_an_input_already_applied_is_not_abandoned_twice() -> None:
    run = Run(CHAIN)
    events = run.start()
    assert events
    applied = run.last_message
    assert applied is not None
    assert abandon(run.state, applied, run.now, error="x") == []


def test_a_failed_child_reports_to_its_parent_and_long_errors_are_cut() -> None:
    child = initial_state("wf-p/kid")
    start = Run(CHAIN, "wf-p/kid").message(run_start_payload(parent="wf-p"))
    events = abandon(child, start, 1, error="e" * 10_000)
    failed = events[0].payload
    assert isinstance(failed, WorkflowFailed) and failed.error is not None
    assert len(failed.error) == MAX_ERROR_CHARS and failed.error.endswith("…")
    plan = plan_events(child, events, topology=Topology())
    reports = [m for _, m in plan.messages if isinstance(m.payload, ChildFinished)]
    assert [(m.workflow_id, m.payload.status) for m in reports] == [("wf-p", "failed")]  # type: ignore[union-attr]


def run_start_payload(parent: str | None = None) -> StartWorkflow:
    return StartWorkflow("chain", None, "{}", parent_workflow_id=parent,
                         parent_step_id="kid" if parent else None)  # fmt: skip
