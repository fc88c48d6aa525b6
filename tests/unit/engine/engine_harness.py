"""A tiny in-memory driver for the decider: given events, when message, then events."""

from __future__ import annotations

import json
from typing import Any

from foldflow.definitions import Definition
from foldflow.processors.decider import decide, evolve, initial_state, react
from foldflow.processors.decider.state import WorkflowState
from foldflow.schemas.messages import (
    Envelope,
    FireTimer,
    Payload,
    StartWorkflow,
    TaskFailed,
    TaskSucceeded,
    dump_json,
)

T0 = 1_700_000_000_000


class Run:
    """One workflow instance driven by hand; every decision is checked for basic contracts."""

    def __init__(
        self,
        definition: Definition | str | None,
        workflow_id: str = "wf-1",
        *,
        tenant: str | None = None,
    ) -> None:
        self.definition = Definition.load(definition) if isinstance(definition, str) else definition
        self.tenant = tenant  # the envelope tenant of commands (results carry none, as workers')
        self.state: WorkflowState = initial_state(workflow_id)
        self.history: list[Envelope] = []
        self.now = T0
        self.count = 0
        self.last_message: Envelope | None = None
        self.outbox: list[Envelope] = []  # react's commands, in order

    def message(self, payload: Payload, *, event_id: str | None = None) -> Envelope:
        """An input envelope stamped with the current time."""
        self.count += 1
        return Envelope(
            event_id=event_id or f"input-{self.count}",
            timestamp=self.now,
            source="test",
            correlation_id="corr-1",
            workflow_id=self.state.workflow_id,
            payload=payload,
            tenant=None if isinstance(payload, TaskSucceeded | TaskFailed) else self.tenant,
        )

    def send_envelope(self, message: Envelope) -> list[Envelope]:
        """Decide on ``message`` and fold the events; asserts determinism and sequences."""
        definition = self.definition if isinstance(message.payload, StartWorkflow) else None
        events = decide(self.state, message, message.timestamp, definition=definition)
        assert events == decide(self.state, message, message.timestamp, definition=definition)
        for event in events:
            assert event.sequence == self.state.sequence + 1
            self.state = evolve(self.state, event)
            self.outbox.extend(react(self.state, event))
        assert [e.sequence for e in self.history + events] == list(
            range(1, len(self.history) + len(events) + 1)
        )
        self.history.extend(events)
        self.last_message = message
        return events

    def send(self, payload: Payload, *, event_id: str | None = None) -> list[Any]:
        """Decide on a payload; returns the emitted payloads."""
        return [e.payload for e in self.send_envelope(self.message(payload, event_id=event_id))]

    def start(self, input: Any = None, **kwargs: Any) -> list[Any]:
        assert self.definition is not None
        return self.send(
            StartWorkflow(
                definition_name=self.definition.name,
                definition_version=self.definition.version,
                input_json=dump_json(input if input is not None else {}),
                **kwargs,
            )
        )

    def succeed(self, step: str, output: Any = None, *, compensation: bool = False) -> list[Any]:
        ss = self.state.steps[step]
        if compensation:
            return self.send(
                TaskSucceeded(ss.comp_task_id or "", step, ss.comp_attempt, "compensation", "null")
            )
        return self.send(
            TaskSucceeded(ss.task_id or "", step, ss.attempt, "step", dump_json(output))
        )

    def fail(
        self, step: str, error: str = "boom", *, retryable: bool = True, compensation: bool = False
    ) -> list[Any]:
        ss = self.state.steps[step]
        if compensation:
            return self.send(
                TaskFailed(
                    ss.comp_task_id or "", step, ss.comp_attempt, "compensation", error, retryable
                )
            )
        return self.send(TaskFailed(ss.task_id or "", step, ss.attempt, "step", error, retryable))

    def fire(self, timer_id: str) -> list[Any]:
        """Advance the clock to the timer's due time and fire it."""
        due = self.state.pending_timers[timer_id]
        self.now = max(self.now, due)
        return self.send(FireTimer(timer_id=timer_id, due_at=due))

    def commands(self) -> list[Envelope]:
        """Everything react derives from the whole history."""
        out: list[Envelope] = []
        state = initial_state(self.state.workflow_id)
        for event in self.history:
            state = evolve(state, event)
            out.extend(react(state, event))
        return out

    @property
    def output(self) -> Any:
        return json.loads(self.state.output_json or "null")


def types(payloads: list[Any]) -> list[str]:
    """Class names of payloads, for compact assertions."""
    return [type(p).__name__ for p in payloads]
