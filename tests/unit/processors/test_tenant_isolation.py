"""Each tenant has its own workflow ids, and the decider applies no tenant's input to
another tenant's workflow.

Given workflow keys (``workflow_key``: the default tenant's id as is, another tenant's as
``@<tenant>/<id>``), when an input names another tenant than the workflow's (in its
envelope or, for a start, in its payload), then it changes nothing and is counted as
``foreign_tenant``.
"""

from __future__ import annotations

from typing import Any

import pytest

from foldflow.definitions import Definition
from foldflow.processors.decider import decide, evolve, foreign_tenant, initial_state, react
from foldflow.processors.decider.state import WorkflowState
from foldflow.processors.runtime.telemetry import ignored_reason
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    CancelWorkflow,
    ChildFinished,
    Envelope,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TaskSucceeded,
    TerminateWorkflow,
    WorkflowFailed,
    own_workflow_id,
    split_workflow_key,
    workflow_key,
)

T0 = 1_700_000_000_000
DEFINITION = Definition.from_data({
    "name": "order",
    "steps": [
        {"id": "charge", "task": "t"},
        {"id": "approval", "signal": "go", "after": ["charge"]},
    ],
})  # fmt: skip
PARENT = Definition.from_data(
    {"name": "parent", "steps": [{"id": "kid", "workflow": "order"}]}
)
ACME = workflow_key("acme", "order-1")


# --- keys ----------------------------------------------------------------------------------


def test_the_default_tenants_ids_are_their_own_keys() -> None:
    assert workflow_key(DEFAULT_TENANT, "order-1") == "order-1"
    assert workflow_key(DEFAULT_TENANT, "order-1/charge") == "order-1/charge"
    assert split_workflow_key("order-1/charge") == (DEFAULT_TENANT, "order-1/charge")


def test_two_tenants_keep_the_same_id_apart() -> None:
    keys = {workflow_key(t, "order-1") for t in (DEFAULT_TENANT, "acme", "globex")}
    assert keys == {"order-1", "@acme/order-1", "@globex/order-1"}
    assert split_workflow_key("@acme/order-1") == ("acme", "order-1")


@pytest.mark.parametrize(
    "tenant", ["a/b", "@x", "a b", "t%41", "ünï", "default/", "acme:1", "~"]
)  # fmt: skip
def test_any_tenant_name_round_trips_and_a_childs_key_stays_in_its_tenant(tenant: str) -> None:
    key = workflow_key(tenant, "order-1")
    assert split_workflow_key(key) == (tenant, "order-1")
    assert split_workflow_key(f"{key}/kid/grandkid") == (tenant, "order-1/kid/grandkid")
    assert own_workflow_id(tenant, f"{key}/kid") == "order-1/kid"
    assert own_workflow_id("someone-else", key) == key  # not theirs: shown as is


@pytest.mark.parametrize("key", ["", "@", "@/x", "@acme", "@acme/", "@%61cme/x", "@a%zz/x"])
def test_keys_no_tenant_can_have_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        split_workflow_key(key)


def test_an_id_cannot_pose_as_another_tenants_key() -> None:
    for tenant in (DEFAULT_TENANT, "acme"):
        with pytest.raises(ValueError):
            workflow_key(tenant, "@acme/order-1")
    with pytest.raises(ValueError):
        workflow_key("", "order-1")


# --- the decider ---------------------------------------------------------------------------


def _message(key: str, payload: Payload, *, tenant: str | None, n: int = 1) -> Envelope:
    return Envelope(
        event_id=f"in-{key}-{n}", timestamp=T0 + n, source="test", correlation_id="c",
        workflow_id=key, payload=payload, tenant=tenant,
    )  # fmt: skip


def _apply(state: WorkflowState, message: Envelope, **kw: Any) -> WorkflowState:
    for event in decide(state, message, message.timestamp, **kw):
        state = evolve(state, event)
    return state


def _start(tenant: str) -> StartWorkflow:
    return StartWorkflow("order", 1, "{}", tenant)


def _running(key: str = ACME, tenant: str = "acme") -> WorkflowState:
    """A workflow of ``tenant`` waiting for its approval signal."""
    state = _apply(
        initial_state(key), _message(key, _start(tenant), tenant=tenant), definition=DEFINITION
    )
    charge = state.steps["charge"]
    done = TaskSucceeded(charge.task_id or "", "charge", charge.attempt, "step", "{}")
    state = _apply(state, _message(key, done, tenant=None, n=2))
    assert state.status == "running" and state.steps["approval"].status == "waiting"
    return state


def test_a_tenant_starts_its_own_key() -> None:
    state = _running()
    assert (state.tenant, state.workflow_id) == ("acme", "@acme/order-1")


@pytest.mark.parametrize(
    ("key", "payload_tenant", "envelope_tenant"),
    [
        ("order-1", "acme", "acme"),  # acme's start on a default-tenant key
        (ACME, "globex", "globex"),  # globex's start on acme's key
        (ACME, "acme", "globex"),  # globex's envelope pinning acme in the payload
        (ACME, "acme", None),  # a start naming no tenant is the default tenant's
        ("@%61cme/order-1", "acme", "acme"),  # a key in no tenant's namespace
    ],
)  # fmt: skip
def test_a_start_on_another_tenants_key_starts_nothing(
    key: str, payload_tenant: str, envelope_tenant: str | None
) -> None:
    state = initial_state(key)
    message = _message(key, _start(payload_tenant), tenant=envelope_tenant)
    assert decide(state, message, T0, definition=DEFINITION) == []
    assert foreign_tenant(state, message)
    assert ignored_reason(state, message) == "foreign_tenant"


@pytest.mark.parametrize(
    "payload",
    [PauseWorkflow(), ResumeWorkflow(), CancelWorkflow("mine now"), TerminateWorkflow("x"),
     SignalWorkflow("go", '{"by":"globex"}')],
    ids=lambda p: type(p).__name__,
)  # fmt: skip
@pytest.mark.parametrize("claimed", ["globex", None])
def test_another_tenants_command_changes_nothing(payload: Payload, claimed: str | None) -> None:
    state = _running()
    crafted = _message(ACME, payload, tenant=claimed, n=3)
    assert decide(state, crafted, T0 + 3) == []
    assert ignored_reason(state, crafted) == "foreign_tenant"
    # The same command from the workflow's own tenant is applied.
    own = _message(ACME, payload, tenant="acme", n=4)
    assert decide(state, own, T0 + 4) != [] or isinstance(payload, ResumeWorkflow)


def test_a_restart_by_another_tenant_is_refused_even_once_started() -> None:
    state = _running()
    again = _message(ACME, _start("globex"), tenant="globex", n=3)
    assert decide(state, again, T0 + 3, definition=DEFINITION) == []
    assert ignored_reason(state, again) == "foreign_tenant"
    same = _message(ACME, _start("acme"), tenant="acme", n=4)
    assert ignored_reason(state, same) == "no_effect"  # an idempotent restart


def test_results_and_timers_need_name_no_tenant_but_never_another() -> None:
    state = _running()
    finished = ChildFinished(f"{ACME}/x", "x", "completed")
    assert not foreign_tenant(state, _message(ACME, finished, tenant=None))
    assert not foreign_tenant(state, _message(ACME, finished, tenant="acme"))
    assert foreign_tenant(state, _message(ACME, finished, tenant="globex"))


def test_the_default_tenants_commands_may_name_no_tenant() -> None:
    state = _running("order-1", DEFAULT_TENANT)
    paused = _message("order-1", PauseWorkflow(), tenant=None, n=3)  # e.g. a v1 envelope
    assert [e.event_type for e in decide(state, paused, T0 + 3)] == ["workflow.paused.v1"]
    assert foreign_tenant(state, _message("order-1", PauseWorkflow(), tenant="acme", n=4))


def test_a_tenants_child_is_its_own_and_failing_at_once_it_reports_to_its_parent() -> None:
    start_child = _child_start()
    assert start_child.workflow_id == "@acme/order-1/kid"
    assert split_workflow_key(start_child.workflow_id) == ("acme", "order-1/kid")
    child = initial_state(start_child.workflow_id)
    failed = decide(child, start_child, T0 + 5, definition=None)  # unknown definition
    assert [type(e.payload) for e in failed] == [WorkflowFailed]
    child = evolve(child, failed[0])
    [report] = react(child, failed[0])
    assert (report.workflow_id, report.tenant) == (ACME, "acme")
    assert report.payload == ChildFinished(
        "@acme/order-1/kid", "kid", "failed", None, "unknown definition order vlatest"
    )


def test_a_root_of_a_tenant_failing_at_once_reports_to_no_parent() -> None:
    root = initial_state(ACME)
    failed = decide(root, _message(ACME, _start("acme"), tenant="acme"), T0, definition=None)
    assert [type(e.payload) for e in failed] == [WorkflowFailed]
    assert react(evolve(root, failed[0]), failed[0]) == []


def test_texts_a_tenant_reads_name_its_own_ids() -> None:
    parent = _apply(
        initial_state(ACME), _message(ACME, StartWorkflow("parent", 1, "{}", "acme"),
                                      tenant="acme"), definition=PARENT,
    )  # fmt: skip
    kid = "@acme/order-1/kid"
    failed = decide(parent, _message(ACME, ChildFinished(kid, "kid", "failed", None, "boom"),
                                     tenant=None, n=2), T0 + 2)  # fmt: skip
    errors = [getattr(e.payload, "error", None) for e in failed]
    assert "child workflow order-1/kid ended failed: boom" in errors
    cancel = decide(parent, _message(ACME, CancelWorkflow("stop"), tenant="acme", n=3), T0 + 3)
    after = parent
    commands = []
    for event in cancel:
        after = evolve(after, event)
        commands.extend(react(after, event))
    [to_child] = [c for c in commands if isinstance(c.payload, CancelWorkflow)]
    assert to_child.workflow_id == kid
    assert to_child.payload == CancelWorkflow("parent workflow order-1 cancelled: stop")


def _child_start() -> Envelope:
    """The ``StartWorkflow`` react derives for acme's parent's child step."""
    state = initial_state(ACME)
    message = _message(ACME, StartWorkflow("parent", 1, "{}", "acme"), tenant="acme")
    for event in decide(state, message, message.timestamp, definition=PARENT):
        state = evolve(state, event)
        for derived in react(state, event):
            if isinstance(derived.payload, StartWorkflow):
                return derived
    raise AssertionError("no child start")
