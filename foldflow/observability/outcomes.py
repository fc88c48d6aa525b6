"""Why a workflow ended as it did: the ``cause`` of ``foldflow_workflow_outcomes_total``.

The end-to-end success objective (docs/slo.md) must tell a failure Foldflow is to blame
for from one the definition asked for. A pure fold over a workflow's history (event type
and payload fields, oldest first) gives each terminal status one cause:

========================  ==============================================================
cause                     meaning (counts against the objective?)
========================  ==============================================================
``none``                  completed (no)
``requested``             cancelled or terminated by a caller (no)
``business``              a handler's non-retryable failure, or a signal the definition
                          waits for did not come in time (no)
``invalid``               refused at start: unknown definition, bad input (no)
``child``                 a child workflow step failed; the child's own outcome counts (no)
``timeout``               the failing attempt timed out or was lost: worker dead, broker
                          away, a handler too slow for its timeout (yes)
``error``                 retryable failures outlasted the retry policy: a dependency down,
                          a handler bug (yes)
``deadline``              the workflow's own timeout fired (yes)
========================  ==============================================================

For ``compensation_failed`` the cause is that of the compensation that could not be run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AGAINST_OBJECTIVE",
    "CAUSES",
    "FAILURE_EVENTS",
    "OUTCOMES",
    "TERMINAL_EVENTS",
    "Outcome",
    "attempt_class",
    "outcome",
]

#: Every cause, in the order of the table above.
CAUSES = ("none", "requested", "business", "invalid", "child", "timeout", "error", "deadline")
#: The causes that spend the end-to-end success error budget.
AGAINST_OBJECTIVE = frozenset({"timeout", "error", "deadline"})

#: event type -> the terminal status it ends a workflow in.
TERMINAL_EVENTS: Mapping[str, str] = {
    "workflow.completed.v1": "completed",
    "workflow.failed.v1": "failed",
    "workflow.compensated.v1": "compensated",
    "workflow.compensation_failed.v1": "compensation_failed",
    "workflow.cancelled.v1": "cancelled",
    "workflow.terminated.v1": "terminated",
}
#: The event types :func:`outcome` reads to explain a failure (a reader may load only these).
FAILURE_EVENTS = frozenset({
    "workflow.failed.v1", "workflow.compensating.v1", "workflow.compensated.v1",
    "workflow.compensation_failed.v1", "step.attempt_failed.v1", "step.failed.v1",
    "step.waiting.v1", "child.requested.v1", "compensation.attempt_failed.v1",
    "compensation.failed.v1",
})
_FIXED = {"completed": "none", "cancelled": "requested", "terminated": "requested"}
_FAULTS = ("business", "child", "timeout", "error", "deadline")
#: Every (status, cause) :func:`outcome` can give: a counter's series start at 0 with these,
#: so the first failure of a kind is an increase Prometheus sees, not a series appearing.
OUTCOMES: tuple[tuple[str, str], ...] = (
    *((status, cause) for status, cause in _FIXED.items()),
    *(("failed", cause) for cause in ("invalid", *_FAULTS)),
    *(("compensated", cause) for cause in ("invalid", *_FAULTS)),
    *(("compensation_failed", cause) for cause in ("business", "timeout", "error")),
)
_DEADLINE_PREFIX = "workflow timed out"


@dataclass(frozen=True)
class Outcome:
    """How one workflow ended."""

    status: str
    cause: str

    @property
    def against_objective(self) -> bool:
        """Whether this end spends the end-to-end success error budget."""
        return self.cause in AGAINST_OBJECTIVE


def attempt_class(fields: Mapping[str, Any]) -> str:
    """``timeout``, ``business`` or ``error`` for one failed attempt's payload fields."""
    if fields.get("timed_out"):
        return "timeout"
    if fields.get("retryable") is False:
        return "business"
    return "error"


def outcome(history: Iterable[tuple[str, Mapping[str, Any]]]) -> Outcome | None:
    """The outcome of a workflow whose history (oldest first) ends in a terminal event;
    None while it has not ended. Events not in :data:`FAILURE_EVENTS` or
    :data:`TERMINAL_EVENTS` may be left out of ``history``."""
    last_attempt: dict[str, str] = {}  # step -> class of its last failed attempt
    last_compensation: dict[str, str] = {}
    waits: dict[str, str] = {}  # step -> what it waited for (signal, child, ...)
    failed_steps: dict[str, str] = {}  # step -> cause of its failure
    stop: str | None = None  # the cause decided when the workflow stopped
    compensation_cause: str | None = None
    ended: Outcome | None = None
    for event_type, fields in history:
        step = str(fields.get("step_id"))
        if event_type == "step.attempt_failed.v1":
            last_attempt[step] = attempt_class(fields)
        elif event_type == "compensation.attempt_failed.v1":
            last_compensation[step] = attempt_class(fields)
        elif event_type == "step.waiting.v1":
            waits[step] = str(fields.get("kind") or "wait")
        elif event_type == "child.requested.v1":
            waits[step] = "child"
        elif event_type == "step.failed.v1":
            failed_steps[step] = last_attempt.get(step) or _wait_cause(waits.get(step))
        elif event_type == "compensation.failed.v1":
            compensation_cause = compensation_cause or last_compensation.get(step, "error")
        elif event_type in ("workflow.compensating.v1", "workflow.failed.v1") and stop is None:
            stop = _stop_cause(fields, failed_steps)
        if event_type in TERMINAL_EVENTS:
            status = TERMINAL_EVENTS[event_type]
            if status in _FIXED:
                cause = _FIXED[status]
            elif status == "compensation_failed":
                cause = compensation_cause or "error"
            else:
                cause = stop or "invalid"
            ended = Outcome(status, cause)
    return ended


def _wait_cause(waited_for: str | None) -> str:
    """A step failed without a failed attempt: its wait ended it."""
    if waited_for == "child":
        return "child"
    return "business"  # a signal (or sleep) the definition bounded did not come in time


def _stop_cause(fields: Mapping[str, Any], failed_steps: Mapping[str, str]) -> str:
    cause = fields.get("cause")
    if cause == "timeout":
        return "deadline"
    if cause == "cancel":
        return "requested"
    step = fields.get("failed_step_id")
    if step is not None:
        # a step that never failed: the decider refused the workflow's own data
        return failed_steps.get(step, "invalid")
    # No step named: the input or definition was refused, or the workflow timed out with
    # nothing to compensate. workflow.failed carries no cause field, so the decider's own
    # wording (processors' stop(cause="timeout")) tells the deadline apart.
    if str(fields.get("error") or "").startswith(_DEADLINE_PREFIX):
        return "deadline"
    return "invalid"
