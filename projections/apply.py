"""The pure fold: events in, row changes out. No I/O, no clock.

The projector loads the current rows of the workflows a batch touches, calls
:func:`fold_batch`, and writes back what it returns with bulk statements. Per workflow,
events apply in ``sequence`` order; a sequence at or below ``last_sequence`` is a
duplicate (re-emitted by the orchestrator) and is skipped; a sequence past
``last_sequence + 1`` is a :class:`GapError` and nothing of the batch may be written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from foldflow.frozen import replace
from foldflow.projections.rows import (
    DefinitionRow,
    EventRow,
    InstanceRow,
    StepRow,
    definition_row,
    event_row,
    loads,
    payload_document,
    to_datetime,
)
from foldflow.projections.storable import NAME_WIDTH, fit
from foldflow.schemas import messages as m

# the row types are re-exported: callers of the fold need them together
__all__ = [
    "DefinitionRow",
    "EventRow",
    "Fold",
    "GapError",
    "InstanceRow",
    "ProjectionError",
    "StepRow",
    "UnappliableEventError",
    "definition_row",
    "event_row",
    "fold_batch",
    "payload_document",
    "to_datetime",
]


class ProjectionError(Exception):
    """A batch that must not be written; the projector rolls back and retries it."""


class GapError(ProjectionError):
    """A workflow's next event is missing: ``got`` arrived while ``expected`` is due."""

    def __init__(self, workflow_id: str, expected: int, got: int) -> None:
        super().__init__(f"gap in workflow {workflow_id}: expected sequence {expected}, got {got}")
        self.workflow_id = workflow_id
        self.expected = expected
        self.got = got


class UnappliableEventError(ProjectionError):
    """An event that cannot start a workflow arrived before its ``workflow.started``."""


@dataclass(frozen=True)
class Fold:
    """What a batch changes: rows to upsert, events to insert, duplicates skipped."""

    instances: dict[str, InstanceRow]
    steps: dict[tuple[str, str], StepRow]
    events: list[EventRow]
    skipped: int


def _start(env: m.Envelope, p: m.WorkflowStarted) -> InstanceRow:
    at = to_datetime(env.timestamp)
    return InstanceRow(
        id=env.workflow_id,
        tenant=p.tenant,
        definition_name=p.definition_name,
        definition_version=p.definition_version,
        status="running",
        input=loads(p.input_json),
        output=None,
        error=None,
        parent_workflow_id=p.parent_workflow_id,
        parent_step_id=p.parent_step_id,
        created_at=at,
        updated_at=at,
        completed_at=None,
        last_sequence=0,
    )


_MAX_INT = 2**31 - 1  # the definition_version column
_UNKNOWN_DEFINITION = re.compile(r"^unknown definition (?P<name>\S+) v(?P<version>\d+|latest)$")


def _failed_at_start(env: m.Envelope, p: m.WorkflowFailed) -> InstanceRow:
    """A workflow refused at start (unknown definition, bad input): failed, never started.

    The event does not name the definition; the decider's message does, so it is read
    from there when it has the usual form (else the name is empty, the version 0).
    """
    at = to_datetime(env.timestamp)
    match = _UNKNOWN_DEFINITION.match(p.error)
    version = match["version"] if match else "0"
    number = int(version) if version.isdigit() and len(version) < 11 else 0
    return InstanceRow(
        id=env.workflow_id,
        tenant=env.tenant or "default",
        definition_name=fit(match["name"], NAME_WIDTH) if match else "",
        definition_version=number if number <= _MAX_INT else 0,
        status="failed",
        input=None,
        output=None,
        error=p.error,
        parent_workflow_id=None,
        parent_step_id=None,
        created_at=at,
        updated_at=at,
        completed_at=at,
        last_sequence=0,
    )


def _instance(row: InstanceRow, p: object, at: datetime) -> InstanceRow:
    """The instance after a workflow-level event (steps are folded by :func:`_step`)."""
    match p:
        case m.WorkflowPaused():
            return replace(row, status="paused")
        case m.WorkflowResumed():
            return replace(row, status="running")
        case m.WorkflowCompleted(output_json=out):
            return replace(row, status="completed", output=loads(out), completed_at=at)
        case m.WorkflowFailed(error=error):
            return replace(row, status="failed", error=error, completed_at=at)
        case m.WorkflowCompensating(reason=reason):
            return replace(row, status="compensating", error=reason)
        case m.WorkflowCompensated(error=error):
            return replace(row, status="compensated", error=error, completed_at=at)
        case m.WorkflowCompensationFailed(error=error):
            return replace(row, status="compensation_failed", error=error, completed_at=at)
        case m.WorkflowCancelled(reason=reason):
            return replace(row, status="cancelled", error=reason or row.error, completed_at=at)
        case m.WorkflowTerminated(reason=reason):
            return replace(row, status="terminated", error=reason or row.error, completed_at=at)
    return row


def _step(step: StepRow, p: object, at: datetime) -> StepRow:
    """A step after one of its events."""
    match p:
        case m.StepScheduled():
            return replace(
                step,
                status="scheduled",
                task_type=p.task_type,
                attempts=max(step.attempts, p.attempt),
                input=loads(p.input_json),
                started_at=step.started_at or at,
            )
        case m.StepCompleted():
            return replace(
                step,
                status="succeeded",
                attempts=max(step.attempts, p.attempt),
                output=loads(p.output_json),
                started_at=step.started_at or at,
                completed_at=at,
            )
        case m.StepAttemptFailed():
            status = "retrying" if p.retry_at is not None else step.status
            attempts = max(step.attempts, p.attempt)
            return replace(step, status=status, attempts=attempts, error=p.error)
        case m.StepFailed():
            return replace(
                step, status="failed", attempts=max(step.attempts, p.attempt), error=p.error,
                completed_at=at,
            )
        case m.StepSkipped():
            return replace(step, status="skipped", detail=p.reason, completed_at=at)
        case m.StepWaiting():
            what = p.signal_name or p.child_workflow_id or (str(p.until) if p.until else None)
            return replace(
                step,
                status="waiting",
                detail=f"{p.kind}: {what}" if what else p.kind,
                child_workflow_id=p.child_workflow_id or step.child_workflow_id,
                started_at=step.started_at or at,
            )
        case m.ChildWorkflowRequested():
            return replace(
                step,
                status="waiting",
                detail=f"child: {p.child_workflow_id}",
                child_workflow_id=p.child_workflow_id,
                input=loads(p.input_json),
                started_at=step.started_at or at,
            )
        case m.CompensationScheduled():
            return replace(
                step,
                compensation_status="scheduled",
                compensation_attempts=max(step.compensation_attempts, p.attempt),
            )
        case m.CompensationCompleted():
            return replace(
                step,
                compensation_status="compensated",
                compensation_attempts=max(step.compensation_attempts, p.attempt),
            )
        case m.CompensationAttemptFailed():
            retrying = p.retry_at is not None
            return replace(
                step,
                compensation_status="retrying" if retrying else step.compensation_status,
                compensation_attempts=max(step.compensation_attempts, p.attempt),
                compensation_error=p.error,
            )
        case m.CompensationFailed():
            return replace(
                step,
                compensation_status="failed",
                compensation_attempts=max(step.compensation_attempts, p.attempt),
                compensation_error=p.error,
            )
    return step


def _step_id_of(p: object) -> str | None:
    if isinstance(p, m.SignalReceived):
        return None  # history only: the step completes through its own step event
    step_id = getattr(p, "step_id", None)
    return step_id if isinstance(step_id, str) else None


def fold_batch(
    instances: Mapping[str, InstanceRow],
    steps: Mapping[tuple[str, str], StepRow],
    events: Iterable[m.Envelope],
) -> Fold:
    """Fold workflow events into the current rows of their workflows.

    ``instances`` and ``steps`` hold the stored rows of (at least) every workflow the
    events name. Raises :class:`GapError` on a missing sequence and
    :class:`UnappliableEventError` when a workflow's first event is neither
    ``workflow.started`` nor ``workflow.failed`` (a start refused by the orchestrator).
    """
    by_workflow: dict[str, list[m.Envelope]] = {}
    for env in events:
        by_workflow.setdefault(env.workflow_id, []).append(env)

    new_instances: dict[str, InstanceRow] = {}
    new_steps: dict[tuple[str, str], StepRow] = {}
    rows: list[EventRow] = []
    skipped = 0
    for workflow_id, envs in by_workflow.items():
        row = instances.get(workflow_id)
        last = row.last_sequence if row else 0
        for env in sorted(envs, key=lambda e: e.sequence or 0):
            seq = env.sequence or 0
            if seq <= last:
                skipped += 1
                continue
            if seq != last + 1:
                raise GapError(workflow_id, last + 1, seq)
            at = to_datetime(env.timestamp)
            p = env.payload
            if row is None:
                if isinstance(p, m.WorkflowStarted):
                    row = _start(env, p)
                elif isinstance(p, m.WorkflowFailed):
                    row = _failed_at_start(env, p)
                else:
                    raise UnappliableEventError(
                        f"workflow {workflow_id}: sequence {seq} is {env.event_type}, "
                        "but no workflow.started was applied"
                    )
            else:
                row = _instance(row, p, at)
            step_id = _step_id_of(p)
            if step_id is not None:
                key = (workflow_id, step_id)
                step = new_steps.get(key) or steps.get(key)
                if step is None:
                    step = StepRow(workflow_id=workflow_id, step_id=step_id, status="pending",
                                   first_sequence=seq)
                new_steps[key] = _step(step, p, at)
            row = replace(row, last_sequence=seq, updated_at=at)
            last = seq
            rows.append(event_row(env, at))
        stored = instances.get(workflow_id)
        if row is not None and row.last_sequence > (stored.last_sequence if stored else 0):
            new_instances[workflow_id] = row
    return Fold(instances=new_instances, steps=new_steps, events=rows, skipped=skipped)
