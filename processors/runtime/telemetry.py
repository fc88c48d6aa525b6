"""The orchestrator's metrics, derived from the events it emits.

Workers count the attempts they run (``foldflow_step_attempts_total`` with outcome
succeeded/failed/timed_out); the orchestrator adds only what a worker cannot see: an
attempt whose result never came back (outcome ``lost``: the worker died or the command
was lost) and the workflow lifecycle counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from foldflow.observability.metrics import (
    CONSUMER_LAG,
    INPUTS_IGNORED,
    STEP_ATTEMPTS,
    WORKFLOWS_FINISHED,
    WORKFLOWS_STARTED,
)
from foldflow.processors.decider import foreign_tenant
from foldflow.processors.decider.plan import Plan
from foldflow.processors.decider.state import TERMINAL_STATUSES, WorkflowState
from foldflow.schemas.messages import (
    TERMINAL_STATUS,
    TYPE_NAMES,
    ChildFinished,
    CompensationAttemptFailed,
    CompensationScheduled,
    Envelope,
    FireTimer,
    StepAttemptFailed,
    StepScheduled,
    TaskFailed,
    TaskSucceeded,
    WorkflowStarted,
)

__all__ = ["LagGauge", "TaskTypes", "ignored_reason", "record_ignored", "record_plan"]

_TASK_FAILED = TYPE_NAMES[TaskFailed]


class TaskTypes:
    """Task id -> task type of the attempts scheduled by this process (bounded)."""

    def __init__(self, *, limit: int = 100_000) -> None:
        self._limit = limit
        self._types: dict[str, str] = {}

    def scheduled(self, task_id: str, task_type: str) -> None:
        """Remember the task type of a dispatched attempt."""
        if len(self._types) >= self._limit:
            self._types.pop(next(iter(self._types)))
        self._types[task_id] = task_type

    def finished(self, task_id: str) -> str:
        """The task type of a finished attempt (``unknown`` if scheduled elsewhere)."""
        return self._types.pop(task_id, "unknown")


def record_plan(plan: Plan, task_types: TaskTypes) -> None:
    """Count what the events of one applied input say happened."""
    definition = plan.state.definition_name or "unknown"
    for event in plan.events:
        payload = event.payload
        if isinstance(payload, WorkflowStarted):
            WORKFLOWS_STARTED.labels(definition=payload.definition_name).inc()
        elif type(payload) in TERMINAL_STATUS:
            status = TERMINAL_STATUS[type(payload)]
            WORKFLOWS_FINISHED.labels(definition=definition, status=status).inc()
        elif isinstance(payload, StepScheduled | CompensationScheduled):
            task_types.scheduled(payload.task_id, payload.task_type)
        elif isinstance(payload, StepAttemptFailed | CompensationAttemptFailed):
            task_type = task_types.finished(payload.task_id)
            # a timeout the worker reported, it counted itself (outcome timed_out)
            if payload.timed_out and plan.input_type != _TASK_FAILED:
                STEP_ATTEMPTS.labels(task_type=task_type, outcome="lost").inc()


def ignored_reason(state: WorkflowState | None, message: Envelope) -> str:
    """Why an input produced no events (a label of ``foldflow_inputs_ignored_total``).

    ``state`` None: the workflow finished and left memory (``finished``).
    """
    if state is None:
        return "finished"
    if message.event_id in state.applied:
        return "duplicate"
    if foreign_tenant(state, message):
        return "foreign_tenant"
    payload = message.payload
    if state.status == "new":
        return "unknown_workflow"
    if state.status in TERMINAL_STATUSES:
        return "finished"
    if isinstance(payload, FireTimer):
        return "stale_timer"
    if isinstance(payload, TaskSucceeded | TaskFailed | ChildFinished):
        return "stale_result"
    return "no_effect"


def record_ignored(state: WorkflowState | None, message: Envelope) -> str:
    """Count an input that produced no events; return why it did not."""
    reason = ignored_reason(state, message)
    INPUTS_IGNORED.labels(reason=reason).inc()
    return reason


class LagGauge:
    """``foldflow_consumer_lag_messages`` of the orchestrator's group: log end minus next to handle.

    Offsets, not records: transaction markers take offsets too, so this is an upper bound.
    """

    def __init__(self, group: str) -> None:
        self._group = group
        self._labelled: set[tuple[str, int]] = set()

    def publish(
        self,
        positions: Iterable[tuple[str, int, int]],
        highwater: Callable[[str, int], int | None],
    ) -> None:
        """Set the gauge for ``(topic, partition, next offset)`` of the owned partitions;
        drop the labels of the others."""
        current: set[tuple[str, int]] = set()
        for topic, partition, position in positions:
            end = highwater(topic, partition)
            if end is None or end < 0:
                continue
            CONSUMER_LAG.labels(self._group, topic, str(partition)).set(max(0, end - position))
            current.add((topic, partition))
        for topic, partition in self._labelled - current:
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        self._labelled = current
