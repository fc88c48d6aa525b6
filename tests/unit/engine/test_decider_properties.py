"""Property tests of the decider (issue 3, (a)-(g)) over random DAGs and random worlds.

A small in-memory world plays workers, children, operators and the timer loop: each
turn hypothesis picks one thing to happen (a task answers, a timer fires, an input is
redelivered, a stale result arrives, a signal, a pause/resume/cancel). Then a fair
phase answers everything and fires every timer until the workflow ends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_harness import Run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldflow.definitions import Definition
from foldflow.processors.decider import decide, evolve, initial_state
from foldflow.processors.decider.state import TERMINAL_STATUSES, state_from_bytes, state_to_bytes
from foldflow.schemas.messages import (
    CancelWorkflow,
    ChildFinished,
    CompensationCompleted,
    CompensationScheduled,
    Envelope,
    ExecuteTask,
    FireTimer,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepCompleted,
    StepScheduled,
    StepSkipped,
    StepWaiting,
    TaskFailed,
    TaskSucceeded,
    TerminateWorkflow,
    dump_json,
)

SIGNALS = ("go", "stop")


@st.composite
def definitions(draw: st.DrawFn) -> Definition:
    """A random valid definition: a DAG of 1-6 steps of every kind."""
    count = draw(st.integers(1, 6))
    steps: list[dict[str, Any]] = []
    for i in range(count):
        earlier = [s["id"] for s in steps]
        after = [sid for sid in earlier if draw(st.booleans())] if earlier else []
        step: dict[str, Any] = {"id": f"s{i}", "after": after}
        kind = draw(st.sampled_from(["task", "task", "task", "sleep", "signal", "child"]))
        if kind == "task":
            step["task"] = "t"
            step["timeout"] = draw(st.sampled_from(["1s", "5s"]))
            step["input"] = {
                "x": "${input.flag}",
                "prev": [f"${{steps.{a}.output}}" for a in after],
            }
        elif kind == "sleep":
            step["sleep"] = draw(st.sampled_from([0, "200ms", "2s"]))
        elif kind == "signal":
            step["signal"] = draw(st.sampled_from(SIGNALS))
            if draw(st.booleans()):
                step["timeout"] = "3s"
        else:
            step["workflow"] = "kid"
        step["retry"] = {
            "max_attempts": draw(st.integers(1, 3)),
            "initial_backoff": draw(st.sampled_from(["100ms", "1s"])),
            "jitter": draw(st.sampled_from([0, 0.5, 1])),
        }
        condition = draw(st.sampled_from([None, None, "input.flag", "not input.flag"]))
        if condition is not None:
            step["when"] = condition
        if after and draw(st.integers(0, 4)) == 0:
            step["when"] = f"steps.{after[0]}.output.ok == true"
        if draw(st.booleans()):
            step["compensate"] = {"task": "undo", "input": {"of": f"${{steps.s{i}.output}}"}}
        steps.append(step)
    data: dict[str, Any] = {"name": "random", "steps": steps}
    if draw(st.booleans()):
        data["timeout"] = "20s"
    return Definition.from_data(data)


class World:
    """Plays everything around one workflow; checks (c), (e) and (g) on every input."""

    def __init__(self, definition: Definition) -> None:
        self.run = Run(definition)
        self.delivered: list[Envelope] = []  # inputs that were applied, for redelivery
        self.answered = 0  # index into run.outbox of the next command nobody handled yet
        self.open: list[Envelope] = []  # task commands and child starts not answered yet

    def deliver(self, message: Envelope) -> list[Envelope]:
        before = self.run.state
        restored = state_from_bytes(state_to_bytes(before))
        assert restored == before
        definition = self.run.definition if isinstance(message.payload, StartWorkflow) else None
        events = self.run.send_envelope(message)
        # (e) deterministic, also from a state that went through the table's byte form
        assert decide(restored, message, message.timestamp, definition=definition) == events
        if events:  # an input that changed nothing leaves no trace (see the known gap below)
            self.delivered.append(message)
        self.open.extend(self.run.outbox[self.answered :])
        self.answered = len(self.run.outbox)
        return events

    def send(self, payload: Any) -> list[Envelope]:
        return self.deliver(self.run.message(payload))

    def answer(self, command: Envelope, *, ok: bool, retryable: bool) -> None:
        self.open.remove(command)
        p = command.payload
        if isinstance(p, ExecuteTask):
            output = dump_json({"ok": ok, "of": p.step_id})
            if ok:
                self.send(TaskSucceeded(p.task_id, p.step_id, p.attempt, p.kind, output))
            else:
                self.send(TaskFailed(p.task_id, p.step_id, p.attempt, p.kind, "boom", retryable))
        elif isinstance(p, StartWorkflow):
            status = "completed" if ok else "failed"
            self.send(ChildFinished(command.workflow_id, p.parent_step_id or "", status, "{}"))

    def fire(self, timer_id: str) -> None:
        due = self.run.state.timers[timer_id]
        self.run.now = max(self.run.now, due)
        self.send(FireTimer(timer_id, due))

    def redeliver(self, message: Envelope, *, fresh_id: bool) -> None:
        """(c): an input seen before, or a stale copy of a result/timer, changes nothing."""
        before = self.run.state
        copy = self.run.message(message.payload) if fresh_id else message
        assert decide(before, copy, self.run.now) == []

    def waiting_signals(self) -> list[str]:
        """The signals a running workflow waits for (a stopping one takes none: its steps
        left waiting stay so while it compensates)."""
        d = self.run.definition
        assert d is not None
        if self.run.state.status != "running":
            return []
        return [
            s.signal or ""
            for s in d.steps
            if s.kind == "signal" and self.run.state.steps[s.id].status == "waiting"
        ]


def random_turn(world: World, data: st.DataObject) -> None:
    state = world.run.state
    options = ["timer", "answer", "answer", "answer", "dup", "stale", "bogus", "signal", "operator"]
    choice = data.draw(st.sampled_from(options))
    if choice == "answer" and world.open:
        command = data.draw(st.sampled_from(world.open))
        world.answer(command, ok=data.draw(st.booleans()), retryable=data.draw(st.booleans()))
    elif choice == "timer" and state.timers:
        world.fire(data.draw(st.sampled_from(sorted(state.timers))))
    elif choice == "dup" and world.delivered:
        world.redeliver(data.draw(st.sampled_from(world.delivered)), fresh_id=False)
    elif choice == "stale":
        stale = [
            m
            for m in world.delivered
            if isinstance(m.payload, TaskSucceeded | TaskFailed | FireTimer)
        ]
        if stale:
            world.redeliver(data.draw(st.sampled_from(stale)), fresh_id=True)
    elif choice == "bogus":
        # a result for an attempt that was never dispatched, or for a different task id
        definition = world.run.definition
        assert definition is not None
        step = data.draw(st.sampled_from([s.id for s in definition.steps]))
        ss = state.steps.get(step)
        attempt = (ss.attempt if ss else 0) + data.draw(st.sampled_from([1, 2]))
        kind = data.draw(st.sampled_from(["step", "compensation"]))
        fake = TaskSucceeded(f"wf-1:{step}:forged:{attempt}", step, attempt, kind, "{}")
        assert decide(state, world.run.message(fake), world.run.now) == []
    elif choice == "signal":
        world.send(SignalWorkflow(data.draw(st.sampled_from(SIGNALS)), '{"n": 1}'))
    elif choice == "operator":
        op = data.draw(st.sampled_from(["pause", "resume", "resume", "cancel", "terminate"]))
        payload = {
            "pause": PauseWorkflow(),
            "resume": ResumeWorkflow(),
            "cancel": CancelWorkflow(),
            "terminate": TerminateWorkflow(),
        }[op]
        if op != "terminate" or data.draw(st.integers(0, 3)) == 0:
            world.send(payload)


def fair_turn(world: World) -> bool:
    """Answer, resume, signal or fire the earliest timer; False when nothing is left."""
    state = world.run.state
    if state.status == "paused":
        world.send(ResumeWorkflow())
    elif world.open:
        world.answer(world.open[0], ok=True, retryable=True)
    elif world.waiting_signals():
        world.send(SignalWorkflow(world.waiting_signals()[0], "{}"))
    elif state.timers:
        world.fire(min(state.timers, key=lambda t: (state.timers[t], t)))
    else:
        return False
    return True


def check_history(world: World) -> None:
    definition = world.run.definition
    assert definition is not None
    history = world.run.history
    # (g) sequences contiguous from 1
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    # (d) folding the events reproduces the state
    state = initial_state(world.run.state.workflow_id)
    for event in history:
        state = evolve(state, event)
    assert state == world.run.state
    # (b) no step starts before its dependencies finished
    finished: set[str] = set()
    completed: list[str] = []
    for event in history:
        p = event.payload
        if isinstance(p, StepScheduled | StepWaiting | StepSkipped) and not (
            isinstance(p, StepScheduled) and p.attempt > 1
        ):
            assert set(definition.step(p.step_id).after) <= finished, p
        if isinstance(p, StepCompleted | StepSkipped):
            finished.add(p.step_id)
        if isinstance(p, StepCompleted):
            completed.append(p.step_id)
    # (f) each compensation runs at most once, in reverse order of completion
    started = [
        e.payload.step_id
        for e in history
        if isinstance(e.payload, CompensationScheduled) and e.payload.attempt == 1
    ]
    done = [e.payload.step_id for e in history if isinstance(e.payload, CompensationCompleted)]
    compensable = [s for s in completed if definition.step(s).compensate is not None]
    assert len(set(started)) == len(started) and len(set(done)) == len(done)
    assert started == list(reversed(compensable))[: len(started)]
    assert done == started[: len(done)]
    assert len(completed) == len(set(completed))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(definition=definitions(), data=st.data())
def test_random_worlds_keep_every_invariant(definition: Definition, data: st.DataObject) -> None:
    world = World(definition)
    world.send(StartWorkflow("random", 1, dump_json({"flag": data.draw(st.booleans())})))
    for _ in range(data.draw(st.integers(0, 40))):
        if world.run.state.status in TERMINAL_STATUSES:
            break
        random_turn(world, data)
    # (a) once everything answers and every timer fires, the workflow ends
    for _ in range(500):
        if world.run.state.status in TERMINAL_STATUSES or not fair_turn(world):
            break
    assert world.run.state.status in TERMINAL_STATUSES, world.run.state
    assert world.run.state.timers == {}
    check_history(world)
    # once terminal, nothing changes any more
    for message in world.delivered[-5:]:
        world.redeliver(message, fresh_id=True)


@settings(max_examples=40, deadline=None)
@given(definition=definitions())
def test_canonical_json_round_trips_random_definitions(definition: Definition) -> None:
    text = definition.canonical_json()
    again = Definition.from_data(json.loads(text))
    assert again == definition and again.canonical_json() == text


@pytest.mark.xfail(strict=True, reason="known gap: an input that changed nothing leaves no "
                   "trace in the state, so its duplicate delivered after the state moved on "
                   "can take effect. The transactional runtime reads each record once and "
                   "producers are idempotent; only a manual replay of an old record hits it.")
def test_a_duplicate_of_an_input_that_changed_nothing_still_changes_nothing() -> None:
    waits = Definition.from_data({"name": "gap", "steps": [{"id": "w", "signal": "go"}]})
    world = World(waits)
    world.send(StartWorkflow("gap", None, "{}"))
    resume = world.run.message(ResumeWorkflow(None))
    assert world.deliver(resume) == []  # running: nothing to resume
    world.send(PauseWorkflow(None))
    assert decide(world.run.state, resume, world.run.now) == []


def test_a_workflow_compensating_past_a_waiting_signal_step_still_ends() -> None:
    """Found by the random worlds (the world kept sending the signal a stopping workflow
    no longer takes, and never fired the compensation's retry timer)."""
    definition = Definition.from_data({
        "name": "random", "timeout": "20s",
        "steps": [
            {"id": "s0", "task": "t", "timeout": "1s", "compensate": {"task": "undo"},
             "retry": {"max_attempts": 2, "initial_backoff": "100ms", "jitter": 0}},
            {"id": "s1", "signal": "go", "after": ["s0"]},
        ],
    })  # fmt: skip
    world = World(definition)
    world.send(StartWorkflow("random", 1, "{}"))
    world.answer(world.open[0], ok=True, retryable=False)
    world.fire("workflow-timeout")
    world.fire("comp-timeout:s0:1")
    assert world.run.state.status == "compensating" and world.waiting_signals() == []
    for _ in range(50):
        if not fair_turn(world):
            break
    assert world.run.state.status == "compensated"
