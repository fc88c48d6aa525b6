"""A parent that stops does not leave its children running (react on the parent's events).

Given a parent whose child steps wait, when it is cancelled, terminated, fails or times
out, then each child it has not heard finish gets ``CancelWorkflow`` (``TerminateWorkflow``
on terminate), once, with ids derived from the event, and a replay derives the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from foldflow.definitions import Definition
from foldflow.processors.decider import decide, evolve, initial_state, react
from foldflow.processors.decider.plan import apply_input, route
from foldflow.processors.decider.state import WorkflowState, state_from_bytes, state_to_bytes
from foldflow.schemas.messages import (
    CancelWorkflow,
    ChildFinished,
    Envelope,
    FireTimer,
    PauseWorkflow,
    Payload,
    SignalWorkflow,
    StartWorkflow,
    TaskFailed,
    TaskSucceeded,
    TerminateWorkflow,
    derived_id,
    dump_json,
)
from foldflow.topics import Topology

T0 = 1_700_000_000_000
TOPOLOGY = Topology(prefix="p.")


def parent(*, compensate: bool = False, kid_timeout: str | None = None) -> Definition:
    """prep → (kid1, kid2: children; work: a task that fails at once) → done."""
    prep: dict[str, Any] = {"id": "prep", "task": "t"}
    if compensate:
        prep["compensate"] = {"task": "undo"}
    kid1: dict[str, Any] = {"id": "kid1", "workflow": "child-def", "after": ["prep"]}
    if kid_timeout is not None:
        kid1["timeout"] = kid_timeout
    return Definition.from_data({
        "name": "parent",
        "timeout": "1h",
        "steps": [
            prep,
            kid1,
            {"id": "kid2", "workflow": "child-def", "after": ["prep"]},
            {"id": "work", "task": "t", "after": ["prep"], "retry": {"max_attempts": 1}},
            {"id": "done", "task": "t", "after": ["kid1", "kid2", "work"]},
        ],
    })  # fmt: skip


CHILD = Definition.from_data({
    "name": "child-def",
    "steps": [
        {"id": "hold", "task": "t", "compensate": {"task": "undo"}},
        {"id": "gate", "signal": "go", "after": ["hold"]},
    ],
})  # fmt: skip


@dataclass
class Run:
    """One workflow driven by hand: every input's events folded, react's output kept."""

    definition: Definition | None
    workflow_id: str = "@acme/wf-1"
    state: WorkflowState = field(init=False)
    history: list[Envelope] = field(default_factory=list)
    outbox: list[Envelope] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self.state = initial_state(self.workflow_id)

    def envelope(self, payload: Payload) -> Envelope:
        self.count += 1
        return Envelope(
            event_id=f"{self.workflow_id}-in-{self.count}", timestamp=T0 + self.count,
            source="test", correlation_id="corr-1", workflow_id=self.workflow_id,
            payload=payload, tenant="acme",
        )  # fmt: skip

    def deliver(self, message: Envelope) -> list[Envelope]:
        """Decide, fold, react; returns react's output for this input."""
        definition = self.definition if isinstance(message.payload, StartWorkflow) else None
        events = decide(self.state, message, message.timestamp, definition=definition)
        derived: list[Envelope] = []
        for event in events:
            self.state = evolve(self.state, event)
            derived.extend(react(self.state, event))
        self.history.extend(events)
        self.outbox.extend(derived)
        return derived

    def send(self, payload: Payload) -> list[Envelope]:
        return self.deliver(self.envelope(payload))

    def start(self, **kw: Any) -> list[Envelope]:
        assert self.definition is not None
        return self.send(StartWorkflow(self.definition.name, None, "{}", "acme", **kw))

    def succeed(self, step: str) -> list[Envelope]:
        ss = self.state.steps[step]
        return self.send(TaskSucceeded(ss.task_id or "", step, ss.attempt, "step", "{}"))

    def fail(self, step: str, error: str) -> list[Envelope]:
        ss = self.state.steps[step]
        return self.send(TaskFailed(ss.task_id or "", step, ss.attempt, "step", error, False))

    def fire(self, timer_id: str) -> list[Envelope]:
        return self.send(FireTimer(timer_id, self.state.pending_timers[timer_id]))

    def replayed(self) -> list[Envelope]:
        """What react derives from the history folded again from the start."""
        state, out = initial_state(self.workflow_id), []
        for event in self.history:
            state = evolve(state, event)
            out.extend(react(state, event))
        return out


def waiting_parent(**kw: Any) -> Run:
    """A parent whose two child steps wait (and whose ``work`` attempt is out)."""
    run = Run(parent(**kw))
    run.start()
    run.succeed("prep")
    assert {run.state.steps[k].status for k in ("kid1", "kid2")} == {"waiting"}
    return run


def closing(out: list[Envelope]) -> list[tuple[str, str]]:
    """(child id, command) of the cancel/terminate commands among react's output."""
    return [
        (m.workflow_id, type(m.payload).__name__)
        for m in out
        if isinstance(m.payload, CancelWorkflow | TerminateWorkflow)
    ]


BOTH_CANCELLED = [("@acme/wf-1/kid1", "CancelWorkflow"), ("@acme/wf-1/kid2", "CancelWorkflow")]
BOTH_TERMINATED = [
    ("@acme/wf-1/kid1", "TerminateWorkflow"),
    ("@acme/wf-1/kid2", "TerminateWorkflow"),
]


def test_cancel_with_nothing_to_undo_cancels_every_waiting_child() -> None:
    run = waiting_parent()
    out = run.send(CancelWorkflow("user asked"))
    assert run.state.status == "cancelled"
    assert closing(out) == BOTH_CANCELLED
    cancelled = run.history[-1]
    first = out[0]
    assert first == Envelope(
        event_id=derived_id(cancelled.event_id, 0), timestamp=cancelled.timestamp,
        source="orchestrator", correlation_id="corr-1", workflow_id="@acme/wf-1/kid1",
        payload=CancelWorkflow("parent workflow wf-1 cancelled: user asked"),
        causation_id=cancelled.event_id, tenant="acme",
    )  # fmt: skip
    assert out[1].event_id == derived_id(cancelled.event_id, 1)
    assert [route(m, TOPOLOGY) for m in out] == ["p.wf.commands"] * 2


def test_cancel_with_compensation_cancels_the_children_when_compensation_begins() -> None:
    run = waiting_parent(compensate=True)
    out = run.fail("work", "x")
    assert run.state.status == "compensating"  # the failure of work, not yet a cancel
    sent = closing(run.outbox)
    assert sent == BOTH_CANCELLED
    cancels = [m.payload for m in out if isinstance(m.payload, CancelWorkflow)]
    assert cancels[0] == CancelWorkflow("parent workflow wf-1 failed: step work failed: x")
    # the undo finishes: the parent ends compensated, and nobody is cancelled twice
    ss = run.state.steps["prep"]
    out = run.send(TaskSucceeded(ss.comp_task_id or "", "prep", 1, "compensation"))
    assert run.state.status == "compensated"
    assert closing(out) == []
    assert closing(run.outbox) == sent


def test_cancel_requested_while_compensating_children_are_cancelled_at_once() -> None:
    run = waiting_parent(compensate=True)
    out = run.send(CancelWorkflow())
    assert run.state.status == "compensating"
    assert closing(out) == BOTH_CANCELLED
    assert out[0].payload == CancelWorkflow("parent workflow wf-1 cancelled: cancelled")
    assert type(out[2].payload).__name__ == "ExecuteTask"  # the undo, after the cancels


def test_terminate_terminates_every_waiting_child() -> None:
    run = waiting_parent(compensate=True)
    out = run.send(TerminateWorkflow("now"))
    assert run.state.status == "terminated"
    assert closing(out) == BOTH_TERMINATED
    assert out[0].payload == TerminateWorkflow("parent workflow wf-1 terminated: now")


def test_terminate_during_the_cancel_compensation_terminates_the_cancelled_children() -> None:
    run = waiting_parent(compensate=True)
    run.send(CancelWorkflow())
    out = run.send(TerminateWorkflow())
    assert closing(out) == BOTH_TERMINATED
    assert closing(run.outbox) == BOTH_CANCELLED + BOTH_TERMINATED


def test_a_task_failure_with_nothing_to_undo_cancels_the_waiting_children() -> None:
    run = waiting_parent()
    out = run.fail("work", "x")
    assert run.state.status == "failed"
    assert closing(out) == BOTH_CANCELLED
    assert out[0].payload == CancelWorkflow("parent workflow wf-1 failed: step work failed: x")


def test_the_workflow_timeout_cancels_the_waiting_children() -> None:
    run = waiting_parent()
    out = run.fire("workflow-timeout")
    assert run.state.status == "failed"
    assert closing(out) == BOTH_CANCELLED
    reason = "parent workflow wf-1 failed: workflow timed out after 3600000ms"
    assert out[0].payload == CancelWorkflow(reason)


def test_a_cancel_while_paused_cancels_the_waiting_children() -> None:
    run = waiting_parent()
    run.send(PauseWorkflow())
    assert closing(run.send(CancelWorkflow())) == BOTH_CANCELLED


def test_a_child_that_reported_its_end_gets_nothing() -> None:
    run = waiting_parent()
    run.send(ChildFinished("@acme/wf-1/kid1", "kid1", "completed", "{}"))
    assert closing(run.send(TerminateWorkflow())) == [("@acme/wf-1/kid2", "TerminateWorkflow")]

    failing = waiting_parent()
    out = failing.send(ChildFinished("@acme/wf-1/kid1", "kid1", "failed", None, "boom"))
    assert failing.state.status == "failed"
    assert closing(out) == [("@acme/wf-1/kid2", "CancelWorkflow")]


def test_a_child_whose_wait_timed_out_is_cancelled_once() -> None:
    run = waiting_parent(kid_timeout="5m")
    out = run.fire("child-timeout:kid1")
    assert run.state.status == "failed"
    assert closing(out) == BOTH_CANCELLED
    reason = (
        "parent workflow wf-1 stopped waiting: timed out waiting for child workflow 'child-def'"
    )
    assert out[0].payload == CancelWorkflow(reason)
    assert out[1].payload == CancelWorkflow(
        "parent workflow wf-1 failed: step kid1 failed: timed out waiting for child workflow "
        "'child-def'"
    )


def test_a_parent_that_completes_sends_nothing() -> None:
    run = waiting_parent()
    run.send(ChildFinished("@acme/wf-1/kid1", "kid1", "completed", "{}"))
    run.send(ChildFinished("@acme/wf-1/kid2", "kid2", "completed", "{}"))
    run.succeed("work")
    run.succeed("done")
    assert run.state.status == "completed"
    assert closing(run.outbox) == []


@pytest.mark.parametrize(
    "stop",
    [CancelWorkflow("c"), TerminateWorkflow("t"), FireTimer("workflow-timeout", 0)],
    ids=["cancel", "terminate", "timeout"],
)
def test_a_replay_derives_identical_commands(stop: Payload) -> None:
    run = waiting_parent(compensate=True)
    before = run.state
    if isinstance(stop, FireTimer):
        stop = FireTimer("workflow-timeout", before.pending_timers["workflow-timeout"])
    message = run.envelope(stop)
    out = run.deliver(message)
    assert closing(out)
    assert run.replayed() == run.outbox  # folding the events again derives the same
    # the input replayed on the state before it (stored state lost), also from its bytes
    for state in (before, state_from_bytes(state_to_bytes(before))):
        plan = apply_input(state, message, definition=None, topology=TOPOLOGY)
        assert [m for _, m in plan.messages[len(plan.events) :]] == out
    # the input redelivered after it was applied changes nothing and derives nothing
    assert decide(run.state, message, message.timestamp) == []


def test_the_cancelled_child_compensates_and_its_report_is_harmless_to_the_parent() -> None:
    parent_run = waiting_parent()
    child = Run(CHILD, workflow_id="@acme/wf-1/kid1")
    child.start(parent_workflow_id="@acme/wf-1", parent_step_id="kid1")
    child.succeed("hold")
    assert child.state.steps["gate"].status == "waiting"

    out = parent_run.send(CancelWorkflow("stop"))
    to_child = next(m for m in out if m.workflow_id == "@acme/wf-1/kid1")
    child.deliver(to_child)
    assert child.state.status == "compensating"
    ss = child.state.steps["hold"]
    report = child.send(TaskSucceeded(ss.comp_task_id or "", "hold", 1, "compensation"))
    assert child.state.status == "cancelled"
    assert [m.payload for m in report] == [
        ChildFinished(
            "@acme/wf-1/kid1", "kid1", "cancelled", None, "parent workflow wf-1 cancelled: stop"
        )
    ]
    assert decide(parent_run.state, report[0], report[0].timestamp) == []  # parent is finished

    # the command again (a replayed parent input), or after the child ended: no effect
    assert decide(child.state, to_child, to_child.timestamp) == []
    assert child.send(TerminateWorkflow()) == []
    assert child.send(SignalWorkflow("go", dump_json(1))) == []


def test_a_child_cancelled_while_its_parent_compensates_reports_harmlessly() -> None:
    parent_run = waiting_parent(compensate=True)
    out = parent_run.send(CancelWorkflow())
    assert parent_run.state.status == "compensating"
    report = ChildFinished("@acme/wf-1/kid1", "kid1", "cancelled", None, "x")
    assert closing(out)
    before = parent_run.state
    assert parent_run.send(report) == []
    assert parent_run.state == before  # no event: the step still waits, the undo goes on


def test_a_stopping_child_passes_the_command_on_to_its_own_children() -> None:
    middle = Run(parent(), workflow_id="@acme/wf-1/kid1")
    middle.start(parent_workflow_id="@acme/wf-1", parent_step_id="kid1")
    middle.succeed("prep")
    out = middle.send(TerminateWorkflow("parent workflow wf-1 terminated"))
    assert [(m.workflow_id, type(m.payload).__name__) for m in out] == [
        ("@acme/wf-1", "ChildFinished"),
        ("@acme/wf-1/kid1/kid1", "TerminateWorkflow"),
        ("@acme/wf-1/kid1/kid2", "TerminateWorkflow"),
    ]
    assert len({m.event_id for m in out}) == 3
