"""Request and response bodies of the REST API, apart from the tables.

``XCreate`` is what a client sends, ``XPublic`` what it gets back. Statuses are the
projection's (``running``, ``paused``, ``compensating`` and the six terminal ones).
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from foldflow.jsonsafe import size_problem
from foldflow.limits import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LENGTH,
    MAX_VERSION,
    human_bytes,
)
from foldflow.schemas.messages import TERMINAL_STATUS

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "ID_PATTERN",
    "NAME_PATTERN",
    "TERMINAL_STATUSES",
    "WORKFLOW_PATH_PATTERN",
    "WORKFLOW_STATUSES",
    "CommandAccepted",
    "CommandCreate",
    "DefinitionPage",
    "DefinitionPublic",
    "EventPage",
    "EventPublic",
    "SignalCreate",
    "StepPublic",
    "WorkflowAccepted",
    "WorkflowCreate",
    "WorkflowPage",
    "WorkflowPublic",
    "WorkflowStatus",
    "WorkflowSummary",
]

#: A workflow id a client chooses (a URL path segment; the tenant's own, see workflow_key).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
#: Any workflow id in a path: a chosen one, or a child's ``<parent id>/<step id>`` (nested).
WORKFLOW_PATH_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}(?:/[A-Za-z_][A-Za-z0-9_-]{0,99}){0,32}$"
)
#: A definition name (as foldflow.definitions accepts it).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
#: Free text that PostgreSQL can store (no NUL; the body check refuses it anyway, this
#: says so in the OpenAPI document).
TEXT_PATTERN = r"^[^\x00]*$"
#: An ``Idempotency-Key``: visible ASCII only (it is hashed into ids, never stored raw).
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}$"


def _payload_sized(value: Any) -> Any:
    """Refuse a value whose canonical JSON is over MAX_PAYLOAD_BYTES (docs/limits.md)."""
    problem = size_problem(value, path="")
    if problem is not None:
        raise ValueError(problem.message)
    return value


#: A JSON value that travels in one message (workflow input, signal data).
Payload = Annotated[Any, AfterValidator(_payload_sized)]
_PAYLOAD_NOTE = f"at most {human_bytes(MAX_PAYLOAD_BYTES)} as canonical JSON (docs/limits.md)"

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
WORKFLOW_STATUSES: tuple[str, ...] = typing.get_args(WorkflowStatus)
TERMINAL_STATUSES = frozenset(TERMINAL_STATUS.values())


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- workflows ------------------------------------------------------------------------------


class WorkflowCreate(_Body):
    """Start a workflow of a registered definition."""

    definition: str = Field(max_length=200, pattern=NAME_PATTERN, examples=["order"])
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="the definition version (default: latest)"
    )
    input: Annotated[dict[str, Any], AfterValidator(_payload_sized)] = Field(
        default_factory=dict, examples=[{"order_id": "A-17"}], description=_PAYLOAD_NOTE
    )
    id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="the workflow id to use (default: from Idempotency-Key, else random)",
    )


class WorkflowAccepted(BaseModel):
    """A start command was acked by Kafka; the workflow will appear under ``id``."""

    id: str
    status: Literal["accepted"] = "accepted"


class StepPublic(BaseModel):
    """One step of a workflow, as the projection sees it."""

    id: str
    status: str = Field(examples=["succeeded"])
    task_type: str | None = None
    attempts: int
    input: Any = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    compensation_status: str | None = None


class WorkflowSummary(BaseModel):
    """A workflow in a list."""

    id: str
    definition: str
    version: int
    status: WorkflowStatus
    parent_workflow_id: str | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class WorkflowPublic(WorkflowSummary):
    """A workflow with its input, output, error and steps."""

    input: Any = None
    output: Any = None
    error: str | None = None
    steps: list[StepPublic] = Field(default_factory=list)


class WorkflowPage(BaseModel):
    """One page of workflows, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[WorkflowSummary]
    next_cursor: str | None = None


class EventPublic(BaseModel):
    """One event of a workflow's history."""

    sequence: int
    event_id: str
    event_type: str = Field(examples=["workflow.started.v1"])
    timestamp: datetime
    source: str
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any]
    altered: dict[str, Any] | None = Field(
        default=None,
        description="Set when a value of the event could not be stored as it was (NaN, "
        "\\u0000, a lone surrogate, nesting too deep...): what was replaced, where and why, "
        "with the original text (docs/operations.md).",
    )


class EventPage(BaseModel):
    """One page of a workflow's history in sequence order."""

    items: list[EventPublic]
    next_cursor: str | None = None


class CommandCreate(_Body):
    """Optional body of cancel, pause, resume and terminate."""

    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH, pattern=TEXT_PATTERN)


class SignalCreate(_Body):
    """A named signal with data, for a ``signal`` step waiting for it."""

    name: str = Field(
        min_length=1, max_length=MAX_NAME_LENGTH, pattern=TEXT_PATTERN, examples=["approved"]
    )
    data: Payload = Field(default=None, description=_PAYLOAD_NOTE)


class CommandAccepted(BaseModel):
    """A command was acked by Kafka; the orchestrator applies it next."""

    id: str = Field(description="the workflow id")
    command: str = Field(examples=["workflow.cancel.v1"])
    status: Literal["accepted"] = "accepted"


# --- definitions ----------------------------------------------------------------------------


class DefinitionPublic(BaseModel):
    """A registered definition version."""

    name: str
    version: int
    definition: dict[str, Any]
    registered_at: datetime | None = None


class DefinitionPage(BaseModel):
    """Definitions of the caller's tenant."""

    items: list[DefinitionPublic]
    next_cursor: str | None = None
