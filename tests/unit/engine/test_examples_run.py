"""The examples run through the decider with simulated built-in workers and end as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine_harness import Run

from foldflow.definitions import Definition
from foldflow.schemas.messages import (
    ExecuteTask,
    FireTimer,
    SignalWorkflow,
    TaskFailed,
    TaskSucceeded,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def builtin_result(task: ExecuteTask) -> TaskSucceeded | TaskFailed:
    """What the built-in workers of DESIGN §7 answer (builtin.http is not simulated)."""
    spec: Any = json.loads(task.input_json)
    if task.task_type == "builtin.fail" and task.attempt <= spec.get("times", 1):
        error = f"builtin.fail: attempt {task.attempt} fails"
        retryable = bool(spec.get("retryable", True))
        return TaskFailed(task.task_id, task.step_id, task.attempt, task.kind, error, retryable)
    assert task.task_type in ("builtin.echo", "builtin.sleep", "builtin.fail"), task.task_type
    return TaskSucceeded(task.task_id, task.step_id, task.attempt, task.kind, task.input_json)


def play(name: str, input: Any, *, signals: tuple[tuple[str, Any], ...] = ()) -> Run:
    run = Run(Definition.load(EXAMPLES / f"{name}.yaml"))
    run.start(input)
    handled = 0
    pending_signals = list(signals)
    for _ in range(200):
        if run.state.status not in ("running", "paused", "compensating"):
            break
        if handled < len(run.outbox):
            command = run.outbox[handled]
            handled += 1
            assert isinstance(command.payload, ExecuteTask)
            run.send(builtin_result(command.payload))
        elif pending_signals and any(s.status == "waiting" for s in run.state.steps.values()):
            signal, data = pending_signals.pop(0)
            run.send(SignalWorkflow(signal, json.dumps(data)))
        elif run.state.timers:
            timer = min(run.state.timers, key=lambda t: run.state.timers[t])
            run.now = max(run.now, run.state.timers[timer])
            run.send(FireTimer(timer, run.state.timers[timer]))
    return run


def test_order_fulfilment_is_compensated_in_reverse_order() -> None:
    run = play("order-fulfilment", {"order_id": "o-1", "amount": 12.5})
    assert run.state.status == "compensated"
    compensations = [
        (c.payload.step_id, json.loads(c.payload.input_json))
        for c in run.outbox
        if isinstance(c.payload, ExecuteTask) and c.payload.kind == "compensation"
    ]
    assert compensations == [
        ("charge_card", {"refund": 12.5, "order_id": "o-1"}),
        ("reserve_stock", {"order_id": "o-1", "action": "release"}),
    ]


def test_order_fulfilment_refuses_bad_input() -> None:
    run = play("order-fulfilment", {"order_id": "o-1", "amount": -3})
    assert run.state.status == "failed"
    assert run.state.error is not None and "input_schema" in run.state.error


def test_fan_out_pipeline_completes() -> None:
    run = play("fan-out-pipeline", {"dataset": "sales", "enrich": False})
    assert run.state.status == "completed"
    assert run.state.steps["enrich"].status == "skipped"
    assert run.output["summary"] == "loaded sales"
    assert run.output["b"] == {"part": "b", "first_row": 1}
    assert (
        play("fan-out-pipeline", {"dataset": "x", "enrich": True}).state.steps["enrich"].status
        == "succeeded"
    )


def test_approval_with_and_without_the_signal() -> None:
    approved = play(
        "approval", {"request": "r"}, signals=(("approve", {"approved": True, "by": "ana"}),)
    )
    assert approved.state.status == "completed"
    assert approved.output == {
        "approved": True,
        "result": {"request": "r", "approved_by": "ana"},
    }
    assert approved.state.steps["reject"].status == "skipped"
    timed_out = play("approval", {"request": "r"})
    assert timed_out.state.status == "failed"
    assert (
        timed_out.state.error
        == "step wait_for_approval failed: timed out waiting for signal 'approve'"
    )


def test_flaky_step_succeeds_on_its_third_attempt() -> None:
    run = play("flaky-retry", {"k": 1})
    assert run.state.status == "completed"
    assert run.state.steps["flaky"].attempt == 3
    assert run.output == {"ok": True, "attempts_needed": 3}
