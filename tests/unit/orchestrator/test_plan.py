"""What one input produces, and where each message goes (pure: the real decider, no I/O)."""

from __future__ import annotations

import pytest

from foldflow.definitions import Definition
from foldflow.processors.decider import initial_state
from foldflow.processors.decider.plan import apply_input, route
from foldflow.processors.decider.state import WorkflowState
from foldflow.processors.runtime.firing import fire_timer_command
from foldflow.processors.runtime.telemetry import TaskTypes, ignored_reason
from foldflow.processors.runtime.timers import DueTimer
from foldflow.schemas.messages import (
    ChildFinished,
    Envelope,
    ExecuteTask,
    FireTimer,
    Payload,
    StartWorkflow,
    TaskSucceeded,
    WorkflowCompleted,
    dump_json,
)
from foldflow.topics import Topology

T0 = 1_700_000_000_000
TOPOLOGY = Topology(prefix="p.")

PARENT = Definition.from_data({
    "name": "parent",
    "steps": [
        {"id": "a", "task": "pay.charge", "input": {}},
        {"id": "kid", "workflow": "child", "after": ["a"], "input": {}},
    ],
})  # fmt: skip
CHILD = Definition.from_data({"name": "child", "steps": [{"id": "x", "task": "t.x"}]})


def _message(wf: str, payload: Payload, n: int = 1) -> Envelope:
    return Envelope(
        event_id=f"in-{wf}-{n}", timestamp=T0 + n, source="test", correlation_id="c",
        workflow_id=wf, payload=payload,
    )  # fmt: skip


def _start(wf: str, definition: Definition, **kw: str) -> tuple[WorkflowState, list[str]]:
    start = StartWorkflow(definition.name, None, dump_json({}), **kw)
    plan = apply_input(
        initial_state(wf), _message(wf, start), definition=definition, topology=TOPOLOGY
    )
    return plan.state, [topic for topic, _ in plan.messages]


def test_a_start_emits_events_then_the_task_command_on_its_task_topic() -> None:
    start = _message("wf-1", StartWorkflow("parent", None, dump_json({})))
    plan = apply_input(initial_state("wf-1"), start, definition=PARENT, topology=TOPOLOGY)
    event_types = [e.event_type for e in plan.events]
    assert event_types[0] == "workflow.started.v1"
    assert "step.scheduled.v1" in event_types
    events = [(t, m) for t, m in plan.messages if t == "p.wf.events"]
    assert [m for _, m in events] == list(plan.events)
    tasks = [(t, m) for t, m in plan.messages if isinstance(m.payload, ExecuteTask)]
    assert [t for t, _ in tasks] == ["p.wf.tasks.pay.charge"]
    assert plan.messages[: len(plan.events)] == tuple(events)  # events first
    assert plan.state.sequence == len(plan.events)


def test_a_child_step_starts_the_child_on_wf_commands_and_the_child_reports_on_wf_results() -> (
    None
):
    state, _ = _start("wf-p", PARENT)
    done = TaskSucceeded(task_id="wf-p:a:run:1", step_id="a", attempt=1, kind="step")
    plan = apply_input(state, _message("wf-p", done, 2), definition=None, topology=TOPOLOGY)
    starts = [(t, m) for t, m in plan.messages if isinstance(m.payload, StartWorkflow)]
    assert len(starts) == 1
    topic, child_start = starts[0]
    assert topic == "p.wf.commands"
    assert child_start.workflow_id != "wf-p"
    assert child_start.payload.parent_workflow_id == "wf-p"  # type: ignore[union-attr]

    child_state, _ = _start(
        child_start.workflow_id, CHILD, parent_workflow_id="wf-p", parent_step_id="kid"
    )
    x_done = TaskSucceeded(
        task_id=f"{child_start.workflow_id}:x:run:1", step_id="x", attempt=1, kind="step"
    )
    plan = apply_input(
        child_state, _message(child_start.workflow_id, x_done, 3),
        definition=None, topology=TOPOLOGY,
    )  # fmt: skip
    reports = [(t, m) for t, m in plan.messages if isinstance(m.payload, ChildFinished)]
    assert [(t, m.workflow_id) for t, m in reports] == [("p.wf.results", "wf-p")]


def test_route_refuses_what_has_no_topic() -> None:
    with pytest.raises(ValueError, match="no route"):
        route(_message("wf", WorkflowCompleted()), TOPOLOGY)


def test_a_timer_fire_has_the_same_id_however_often_it_is_sent() -> None:
    due = DueTimer("wf-1", "retry:a:2", T0, 0)
    first = fire_timer_command(due, now=T0 + 5)
    again = fire_timer_command(due, now=T0 + 5_000)
    assert first.event_id == again.event_id
    assert first.payload == FireTimer("retry:a:2", T0)
    assert first.timestamp == T0 + 5
    assert fire_timer_command(due, now=T0 - 10).timestamp == T0  # never before it is due
    assert fire_timer_command(DueTimer("wf-1", "retry:a:2", T0 + 1, 0), now=T0).event_id != (
        first.event_id
    )


def test_ignored_inputs_are_told_apart() -> None:
    state, _ = _start("wf-i", CHILD)
    applied = _message("wf-i", StartWorkflow("child", None, "{}"))
    assert ignored_reason(state, applied) == "duplicate"
    assert ignored_reason(state, _message("wf-i", FireTimer("t", 1), 9)) == "stale_timer"
    stale = TaskSucceeded(task_id="old", step_id="x", attempt=9, kind="step")
    assert ignored_reason(state, _message("wf-i", stale, 9)) == "stale_result"
    assert ignored_reason(initial_state("new"), _message("new", stale, 9)) == "unknown_workflow"


def test_task_types_are_remembered_until_finished_and_bounded() -> None:
    types = TaskTypes(limit=2)
    types.scheduled("t1", "a")
    types.scheduled("t2", "b")
    types.scheduled("t3", "c")  # evicts the oldest
    assert types.finished("t1") == "unknown"
    assert types.finished("t3") == "c"
    assert types.finished("t3") == "unknown"
