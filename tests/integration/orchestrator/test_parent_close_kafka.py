"""A parent that stops takes its running child with it, on the real broker.

The parent's child step starts a child that holds a compensable step and then waits for a
signal that never comes. Cancelling the parent cancels the child (which compensates);
terminating the parent terminates the child. Real orchestrator and worker processes.
"""

from __future__ import annotations

import time
import uuid

import pytest
from orchestrator_harness import CancelWorkflow, Deployment, EventLog, TerminateWorkflow

from foldflow.definitions import Definition
from foldflow.schemas.messages import WorkflowCancelled, WorkflowTerminated

WAIT_S = 60.0

pytestmark = pytest.mark.usefixtures("orchestrator", "worker")

CHILD = {
    "name": "pc-child",
    "steps": [
        {
            "id": "hold",
            "task": "builtin.echo",
            "input": {"hold": True},
            "compensate": {"task": "builtin.echo", "input": {"release": True}},
        },
        {"id": "gate", "signal": "go", "after": ["hold"]},
    ],
}
PARENT = {
    "name": "pc-parent",
    "steps": [
        {"id": "prep", "task": "builtin.echo", "input": {}},
        {"id": "kid", "workflow": "pc-child", "after": ["prep"], "input": {}},
        {"id": "done", "task": "builtin.echo", "after": ["kid"], "input": {}},
    ],
}


@pytest.fixture(scope="module", autouse=True)
def _definitions(deployment: Deployment) -> None:
    for data in (CHILD, PARENT):
        deployment.register(Definition.from_data(data))


def _waiting_child(deployment: Deployment, events: EventLog) -> tuple[str, str]:
    """Start a parent; return (parent id, child id) once the child waits for its signal."""
    parent = deployment.start("pc-parent", {}, workflow_id=f"pc-{uuid.uuid4().hex[:10]}")
    child = f"{parent}/kid"
    events.wait(
        lambda log: "step.waiting.v1" in log.types(child), timeout=WAIT_S,
        what="the child waiting for its signal",
    )  # fmt: skip
    return parent, child


def _settled(events: EventLog, wf: str) -> list[str]:
    """The event types of ``wf`` once a little while passed without new ones."""
    seen = -1
    while seen != len(events.types(wf)):
        seen = len(events.types(wf))
        time.sleep(1.0)
        events.poll()
    return events.types(wf)


def test_cancelling_the_parent_cancels_the_child(deployment: Deployment, events: EventLog) -> None:
    parent, child = _waiting_child(deployment, events)
    deployment.command(parent, CancelWorkflow("customer left"))
    statuses = events.wait_finished([parent, child], timeout=WAIT_S)
    assert statuses == {parent: "cancelled", child: "cancelled"}
    child_types = events.types(child)
    assert "compensation.completed.v1" in child_types  # the child undid its held step
    end = events.by_workflow[child][-1].payload
    assert end == WorkflowCancelled(f"parent workflow {parent} cancelled: customer left")
    # the child's ChildFinished reached a parent that had already ended: no new event
    parent_types = _settled(events, parent)
    assert parent_types[-1] == "workflow.cancelled.v1"
    assert parent_types.count("workflow.cancelled.v1") == 1
    sequences = [e.sequence for e in events.by_workflow[parent]]
    assert sequences == list(range(1, len(sequences) + 1))


def test_terminating_the_parent_terminates_the_child(
    deployment: Deployment, events: EventLog
) -> None:
    parent, child = _waiting_child(deployment, events)
    deployment.command(parent, TerminateWorkflow("stop everything"))
    statuses = events.wait_finished([parent, child], timeout=WAIT_S)
    assert statuses == {parent: "terminated", child: "terminated"}
    assert "compensation.scheduled.v1" not in events.types(child)
    end = events.by_workflow[child][-1].payload
    assert end == WorkflowTerminated(f"parent workflow {parent} terminated: stop everything")
    # a late command to the ended child changes nothing
    deployment.command(child, CancelWorkflow("too late"))
    assert _settled(events, child)[-1] == "workflow.terminated.v1"
    assert _settled(events, parent)[-1] == "workflow.terminated.v1"
