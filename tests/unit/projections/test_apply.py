"""The pure fold: realistic event logs in, rows out (given events, then rows)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from projection_support import SCENARIOS, Script, completed, definition_envelope

from foldflow.projections.apply import (
    Fold,
    GapError,
    InstanceRow,
    StepRow,
    UnappliableEventError,
    definition_row,
    fold_batch,
    payload_document,
)
from foldflow.schemas import messages as m


def fold_all(events: Sequence[m.Envelope]) -> Fold:
    return fold_batch({}, {}, events)


def fold_in_chunks(events: Sequence[m.Envelope], size: int) -> tuple[
    dict[str, InstanceRow], dict[tuple[str, str], StepRow], list[object]
]:
    """Fold batch after batch, carrying the rows over like the database does."""
    instances: dict[str, InstanceRow] = {}
    steps: dict[tuple[str, str], StepRow] = {}
    history: list[object] = []
    for i in range(0, len(events), size):
        fold = fold_batch(instances, steps, events[i : i + size])
        instances.update(fold.instances)
        steps.update(fold.steps)
        history.extend(fold.events)
    return instances, steps, history


def one(fold: Fold, wid: str) -> InstanceRow:
    return fold.instances[wid]


def test_completed_workflow() -> None:
    s = completed("wf-c")
    fold = fold_all(s.events)
    row = one(fold, "wf-c")
    assert (row.status, row.output, row.error) == ("completed", {"paid": 42}, None)
    assert row.input == {"n": 1}
    assert (row.definition_name, row.definition_version, row.tenant) == ("order", 1, "default")
    assert row.last_sequence == len(s.events) == 6
    assert row.created_at.timestamp() * 1000 == s.events[0].timestamp
    assert row.completed_at is not None
    assert row.completed_at.timestamp() * 1000 == s.events[-1].timestamp
    reserve, charge = fold.steps["wf-c", "reserve"], fold.steps["wf-c", "charge"]
    assert (reserve.status, reserve.attempts, reserve.output) == (
        "succeeded", 1, {"reservation": "r-1"})
    assert (charge.status, charge.output, charge.task_type) == (
        "succeeded", {"paid": 42}, "builtin.echo")
    assert reserve.first_sequence < charge.first_sequence
    assert [e.sequence for e in fold.events] == [1, 2, 3, 4, 5, 6]
    assert fold.events[0].event_type == "workflow.started.v1"


def test_retries_count_attempts_and_keep_the_last_error() -> None:
    fold = fold_all(SCENARIOS["retried"]("wf-r", "default").events)
    step = fold.steps["wf-r", "call"]
    assert (step.status, step.attempts, step.output) == ("succeeded", 3, {"ok": True})
    assert step.error == "boom 2"
    assert one(fold, "wf-r").status == "completed"


def test_retrying_status_between_attempts() -> None:
    s = Script("wf-x").start().fail_attempt("call", 1, retry=True)
    assert fold_all(s.events).steps["wf-x", "call"].status == "retrying"


def test_failed_workflow() -> None:
    fold = fold_all(SCENARIOS["failed"]("wf-f", "default").events)
    row = one(fold, "wf-f")
    assert (row.status, row.error) == ("failed", "step call failed: boom 1")
    step = fold.steps["wf-f", "call"]
    assert (step.status, step.attempts, step.error) == ("failed", 1, "boom 1")
    assert step.completed_at is not None


def test_compensated_workflow() -> None:
    fold = fold_all(SCENARIOS["compensated"]("wf-s", "t1").events)
    row = one(fold, "@t1/wf-s")  # rows hold the workflow key (t1's own id is wf-s)
    assert (row.status, row.error, row.tenant) == ("compensated", "step charge failed", "t1")
    reserve = fold.steps["@t1/wf-s", "reserve"]
    assert (reserve.status, reserve.compensation_status, reserve.compensation_attempts) == (
        "succeeded", "compensated", 2)
    assert reserve.compensation_error == "undo failed"
    assert fold.steps["@t1/wf-s", "charge"].status == "failed"
    assert fold.steps["@t1/wf-s", "charge"].compensation_status is None


def test_compensation_in_progress_then_failed_for_good() -> None:
    s = Script("wf-cf").start().run_step("a")
    s.add(m.WorkflowCompensating("failure", "x"))
    tid = m.task_id("wf-cf", "a", 1, compensation=True)
    s.add(m.CompensationScheduled("a", 1, tid, "t", "{}", 1))
    assert fold_all(s.events).steps["wf-cf", "a"].compensation_status == "scheduled"
    assert one(fold_all(s.events), "wf-cf").status == "compensating"
    s.add(m.CompensationFailed("a", 1, "no undo"))
    s.add(m.WorkflowCompensationFailed("no undo", "a"))
    fold = fold_all(s.events)
    assert fold.steps["wf-cf", "a"].compensation_status == "failed"
    assert (one(fold, "wf-cf").status, one(fold, "wf-cf").error) == ("compensation_failed",
                                                                     "no undo")


def test_cancelled_after_pause_and_resume() -> None:
    s = SCENARIOS["cancelled"]("wf-k", "default")
    paused_at = next(i for i, e in enumerate(s.events) if isinstance(e.payload, m.WorkflowPaused))
    assert one(fold_all(s.events[: paused_at + 1]), "wf-k").status == "paused"
    fold = fold_all(s.events)
    row = one(fold, "wf-k")
    assert (row.status, row.error) == ("cancelled", "customer changed their mind")
    assert fold.steps["wf-k", "reserve"].compensation_status == "compensated"


def test_signal_skip_and_sleep() -> None:
    s = SCENARIOS["signalled"]("wf-g", "default")
    waiting = fold_all(s.events[:2]).steps["wf-g", "approve"]
    assert (waiting.status, waiting.detail) == ("waiting", "signal: approval")
    fold = fold_all(s.events)
    assert fold.steps["wf-g", "approve"].status == "succeeded"
    assert fold.steps["wf-g", "approve"].output == {"by": "alice"}
    skipped = fold.steps["wf-g", "escalate"]
    assert (skipped.status, skipped.detail) == ("skipped", "when: approval.by == null")
    assert "signal.received.v1" in [e.event_type for e in fold.events]
    assert fold.events[2].payload == {"name": "approval", "data": {"by": "alice"},
                                      "step_id": "approve"}


def test_terminated_and_child_steps() -> None:
    s = SCENARIOS["terminated"]("wf-t", "default")
    fold = fold_all(s.events)
    assert one(fold, "wf-t").status == "terminated"
    assert fold.steps["wf-t", "wait"].status == "scheduled"
    c = Script("wf-p").start()
    c.add(m.ChildWorkflowRequested("sub", "wf-p-child", "child", None, "{}"))
    step = fold_all(c.events).steps["wf-p", "sub"]
    assert (step.status, step.child_workflow_id) == ("waiting", "wf-p-child")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_batches_of_any_size_fold_to_the_same_rows(size: int) -> None:
    events = [e for f in SCENARIOS.values() for e in f(f"wf-{f.__name__}", "default").events]
    whole = fold_all(events)
    instances, steps, history = fold_in_chunks(events, size)
    assert instances == whole.instances
    assert steps == whole.steps
    assert history == whole.events


def test_duplicates_are_skipped_and_change_nothing() -> None:
    s = completed("wf-d")
    first = fold_all(s.events[:4])
    again = fold_batch(first.instances, first.steps, [*s.events[:4], *s.events[2:]])
    assert again.skipped == 4 + 2
    assert [e.sequence for e in again.events] == [5, 6]
    assert again.instances["wf-d"] == fold_all(s.events).instances["wf-d"]
    # a batch of nothing but duplicates writes nothing
    nothing = fold_batch(fold_all(s.events).instances, {}, s.events)
    assert (nothing.instances, nothing.steps, nothing.events, nothing.skipped) == ({}, {}, [], 6)


def test_out_of_order_inside_a_batch_is_sorted() -> None:
    s = completed("wf-o")
    assert fold_all(list(reversed(s.events))).instances == fold_all(s.events).instances


def test_a_gap_is_an_error() -> None:
    s = completed("wf-gap")
    with pytest.raises(GapError) as info:
        fold_all([s.events[0], s.events[1], s.events[3]])
    assert (info.value.workflow_id, info.value.expected, info.value.got) == ("wf-gap", 3, 4)
    applied = fold_all(s.events[:2])
    with pytest.raises(GapError):
        fold_batch(applied.instances, applied.steps, [s.events[4]])


def test_first_event_must_start_the_workflow() -> None:
    s = completed("wf-u")
    bogus = dataclasses.replace(s.events[1], sequence=1)
    with pytest.raises(UnappliableEventError):
        fold_all([bogus])


@pytest.mark.parametrize(("error", "name", "version"), [
    ("unknown definition order v3", "order", 3),
    ("unknown definition order vlatest", "order", 0),
    ("input is not valid JSON: Expecting value", "", 0),
])
def test_a_start_refused_by_the_orchestrator_is_a_failed_workflow(
    error: str, name: str, version: int
) -> None:
    s = Script("wf-refused", tenant="acme")
    s.add(m.WorkflowFailed(error))
    row = fold_all(s.events).instances[s.key]
    assert (row.status, row.error, row.tenant, row.last_sequence) == ("failed", error, "acme", 1)
    assert (row.definition_name, row.definition_version) == (name, version)
    assert row.completed_at == row.created_at


def test_payload_document_is_lossless() -> None:
    for env in completed("wf-l").events:
        doc = payload_document(env.payload)
        fields = {f.name: getattr(env.payload, f.name) for f in dataclasses.fields(env.payload)}
        back = {k: (m.dump_json(doc[k.removesuffix("_json")]) if k.endswith("_json") else doc[k])
                for k in fields}
        assert back == fields


def test_definition_row() -> None:
    row = definition_row(definition_envelope("order", 3, tenant="acme"))
    assert (row.tenant, row.name, row.version) == ("acme", "order", 3)
    assert row.definition["version"] == 3
