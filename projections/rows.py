"""The rows of the projection tables as plain frozen dataclasses, and how an event becomes
its history row (pure: no I/O, no clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from foldflow.frozen import build, field_names
from foldflow.schemas import messages as m

__all__ = [
    "DefinitionRow",
    "EventRow",
    "InstanceRow",
    "StepRow",
    "definition_row",
    "event_row",
    "loads",
    "payload_document",
    "to_datetime",
]


@dataclass(frozen=True)
class InstanceRow:
    """One row of ``workflow_instances``."""

    id: str
    tenant: str
    definition_name: str
    definition_version: int
    status: str
    input: Any
    output: Any
    error: str | None
    parent_workflow_id: str | None
    parent_step_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_sequence: int


@dataclass(frozen=True)
class StepRow:
    """One row of ``step_executions``."""

    workflow_id: str
    step_id: str
    status: str
    task_type: str | None = None
    attempts: int = 0
    input: Any = None
    output: Any = None
    error: str | None = None
    detail: str | None = None
    child_workflow_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    compensation_status: str | None = None
    compensation_attempts: int = 0
    compensation_error: str | None = None
    first_sequence: int = 0


@dataclass(frozen=True)
class EventRow:
    """One row of ``workflow_events``: the event as history."""

    workflow_id: str
    sequence: int
    event_id: str
    event_type: str
    timestamp: datetime
    source: str
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any]
    #: what had to change so PostgreSQL could store the event (None: nothing)
    altered: dict[str, Any] | None = None


_EVENT_ROW_FIELDS = field_names(EventRow)


@dataclass(frozen=True)
class DefinitionRow:
    """One row of ``workflow_definitions``."""

    tenant: str
    name: str
    version: int
    definition: Any
    registered_at: datetime
    #: what had to change so PostgreSQL could store the definition (None: nothing)
    altered: dict[str, Any] | None = None


def to_datetime(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def loads(text: str | None) -> Any:
    """A ``*_json`` field's value (None stays None)."""
    return None if text is None else m.load_json(text)


def payload_document(payload: object) -> dict[str, Any]:
    """A payload as a JSON document: ``*_json`` fields become ``*`` with their parsed value.

    Lossless: :func:`foldflow.schemas.messages.dump_json` of the value gives the field back.
    """
    doc: dict[str, Any] = {}
    for name, value in vars(payload).items():  # the fields, in order (no slots)
        if name.endswith("_json"):
            doc[name.removesuffix("_json")] = loads(value)
        else:
            doc[name] = value
    return doc


def event_row(env: m.Envelope, at: datetime) -> EventRow:
    """The history row of an event envelope (``sequence`` must be set) whose timestamp is
    ``at`` (``to_datetime(env.timestamp)``: the fold has it already)."""
    assert env.sequence is not None
    return build(EventRow, {  # without EventRow's __init__: one row per event projected
        "workflow_id": env.workflow_id,
        "sequence": env.sequence,
        "event_id": env.event_id,
        "event_type": env.event_type,
        "timestamp": at,
        "source": env.source,
        "correlation_id": env.correlation_id,
        "causation_id": env.causation_id,
        "payload": payload_document(env.payload),
        "altered": None,
    }, _EVENT_ROW_FIELDS)


def definition_row(env: m.Envelope) -> DefinitionRow:
    """The ``workflow_definitions`` row of a ``definition.registered`` envelope."""
    p = env.payload
    assert isinstance(p, m.DefinitionRegistered)
    return DefinitionRow(
        tenant=p.tenant,
        name=p.name,
        version=p.version,
        definition=json.loads(p.definition_json),
        registered_at=to_datetime(env.timestamp),
    )
