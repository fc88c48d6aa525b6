"""The bodies of the Foldflow REST API, as the client sends and reads them.

Each class is named after its schema in the OpenAPI document (``gateway/openapi.json``);
a contract test checks that both declare the same fields and the same required ones.
Responses ignore fields they do not know, so a newer gateway does not break an older
client; requests refuse unknown fields, as the gateway does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TERMINAL_STATUSES",
    "CheckPublic",
    "CommandAccepted",
    "CommandCreate",
    "DefinitionPage",
    "DefinitionPublic",
    "EventPage",
    "EventPublic",
    "FieldProblem",
    "Health",
    "Problem",
    "Readiness",
    "ReadinessProblem",
    "SignalCreate",
    "StepPublic",
    "WorkflowAccepted",
    "WorkflowCreate",
    "WorkflowPage",
    "WorkflowPublic",
    "WorkflowStatus",
    "WorkflowSummary",
]

WorkflowStatus = Literal[
    "running",
    "paused",
    "compensating",
    "completed",
    "failed",
    "compensated",
    "compensation_failed",
    "cancelled",
    "terminated",
]
#: The statuses a workflow never leaves.
TERMINAL_STATUSES = frozenset(
    {"completed", "failed", "compensated", "compensation_failed", "cancelled", "terminated"}
)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- requests --------------------------------------------------------------------------------


class WorkflowCreate(_Request):
    """Start a workflow of a registered definition (``version`` None: the latest)."""

    definition: str = Field(max_length=200)
    version: int | None = Field(default=None, ge=1)
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class CommandCreate(_Request):
    """The optional body of cancel, pause, resume and terminate."""

    reason: str | None = Field(default=None, max_length=1000)


class SignalCreate(_Request):
    """A named signal with data, for a ``signal`` step waiting for it."""

    name: str = Field(min_length=1, max_length=200)
    data: Any = None


# --- responses -------------------------------------------------------------------------------


class WorkflowAccepted(_Response):
    """A start command was acked by Kafka; the workflow will appear under ``id``."""

    id: str
    status: Literal["accepted"] = "accepted"


class CommandAccepted(_Response):
    """A command was acked by Kafka; the orchestrator applies it next."""

    id: str
    command: str
    status: Literal["accepted"] = "accepted"


class StepPublic(_Response):
    """One step of a workflow, as the projection sees it."""

    id: str
    status: str
    task_type: str | None = None
    attempts: int
    input: Any = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    compensation_status: str | None = None


class WorkflowSummary(_Response):
    """A workflow in a list."""

    id: str
    definition: str
    version: int
    status: WorkflowStatus
    parent_workflow_id: str | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the workflow reached a status it never leaves."""
        return self.status in TERMINAL_STATUSES


class WorkflowPublic(WorkflowSummary):
    """A workflow with its input, output, error and steps."""

    input: Any = None
    output: Any = None
    error: str | None = None
    steps: list[StepPublic] = Field(default_factory=list)


class WorkflowPage(_Response):
    """One page of workflows, newest first."""

    items: list[WorkflowSummary]
    next_cursor: str | None = None


class EventPublic(_Response):
    """One event of a workflow's history."""

    sequence: int
    event_id: str
    event_type: str
    timestamp: datetime
    source: str
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any]
    altered: dict[str, Any] | None = None
    """What could not be stored as it was (NaN, \\u0000...), where and why (docs/operations.md)."""


class EventPage(_Response):
    """One page of a workflow's history in sequence order."""

    items: list[EventPublic]
    next_cursor: str | None = None


class DefinitionPublic(_Response):
    """A registered definition version."""

    name: str
    version: int
    definition: dict[str, Any]
    registered_at: datetime | None = None


class DefinitionPage(_Response):
    """Definitions of the caller's tenant."""

    items: list[DefinitionPublic]
    next_cursor: str | None = None


class Health(_Response):
    """The gateway process is up."""

    status: Literal["ok"] = "ok"


class CheckPublic(_Response):
    """One dependency's readiness."""

    ok: bool
    detail: str


class Readiness(_Response):
    """Every dependency answers."""

    status: Literal["ready"] = "ready"
    checks: dict[str, CheckPublic]


class FieldProblem(_Response):
    """One invalid field: where it is (``body.input``, ``query.limit``) and what is wrong."""

    location: str
    message: str
    type: str | None = None


class Problem(_Response):
    """An RFC 9457 problem details object, as every error of the API is."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldProblem] | None = None
    dependency: str | None = None


class ReadinessProblem(Problem):
    """A dependency does not answer: the problem, plus every check."""

    checks: dict[str, CheckPublic]
