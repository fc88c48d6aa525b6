"""The read API the gateway and the CLI use: typed results, never ORM rows.

Every function takes a :class:`~sqlalchemy.Connection` or :class:`~sqlalchemy.Engine`
(the composition root owns the engine) and a tenant: a caller sees its tenant's rows only.
Workflow ids are the tenant's own: the rows hold each workflow's key
(:func:`~foldflow.schemas.messages.workflow_key`), and ids go in and come out as the tenant knows
them, so another tenant's workflow of the same id is a different row, never found.
Lists are newest first with keyset pagination over ``(created_at, key)``; the cursor is
opaque (URL-safe base64 of that pair).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, select, tuple_

from foldflow.projections.models import (
    TERMINAL_STATUSES,
    step_executions,
    workflow_definitions,
    workflow_events,
    workflow_instances,
)
from foldflow.schemas.messages import own_workflow_id, workflow_key

__all__ = [
    "DefinitionView",
    "EventView",
    "InvalidCursorError",
    "StepView",
    "WorkflowDetail",
    "WorkflowSummary",
    "decode_cursor",
    "definition_version",
    "encode_cursor",
    "get_definition",
    "get_history",
    "get_workflow",
    "list_definitions",
    "list_workflows",
    "wait_for_status",
    "workflow_status",
]

Bind = Connection | Engine
MAX_LIMIT = 500


class InvalidCursorError(ValueError):
    """A cursor that this module did not produce (or that was tampered with)."""


@dataclass(frozen=True)
class WorkflowSummary:
    """One workflow in a list."""

    id: str
    tenant: str
    definition: str
    version: int
    status: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_sequence: int
    parent_workflow_id: str | None


@dataclass(frozen=True)
class StepView:
    """One step of a workflow as projected."""

    step_id: str
    status: str
    task_type: str | None
    attempts: int
    input: Any
    output: Any
    error: str | None
    detail: str | None
    child_workflow_id: str | None
    started_at: datetime | None
    completed_at: datetime | None
    compensation_status: str | None
    compensation_attempts: int
    compensation_error: str | None


@dataclass(frozen=True)
class WorkflowDetail(WorkflowSummary):
    """A workflow with its input, output, error and steps (in the order they began)."""

    input: Any
    output: Any
    error: str | None
    parent_step_id: str | None
    steps: tuple[StepView, ...]

    @property
    def terminal(self) -> bool:
        """Whether the workflow reached a final status."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class EventView:
    """One event of a workflow's history."""

    sequence: int
    event_id: str
    event_type: str
    timestamp: datetime
    source: str
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any]
    #: what the projector had to change so PostgreSQL could store it (None: nothing)
    altered: dict[str, Any] | None = None


@dataclass(frozen=True)
class DefinitionView:
    """A registered definition version."""

    tenant: str
    name: str
    version: int
    definition: Any
    registered_at: datetime


@contextmanager
def _connect(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def encode_cursor(created_at: datetime, workflow_id: str) -> str:
    """The opaque cursor that continues a list after the row ``(created_at, id)``."""
    raw = json.dumps([created_at.isoformat(), workflow_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, id)`` of a cursor; :class:`InvalidCursorError` when malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, workflow_id = json.loads(raw)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not isinstance(workflow_id, str):
            raise ValueError("bad cursor")
        return when, workflow_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursorError("invalid cursor") from exc


def _key(tenant: str, workflow_id: str) -> str | None:
    """The key of the tenant's workflow ``workflow_id`` (None: no workflow can have it)."""
    try:
        return workflow_key(tenant, workflow_id)
    except ValueError:
        return None


def _own(tenant: str, key: str | None) -> str | None:
    return None if key is None else own_workflow_id(tenant, key)


def _summary_fields(r: Row[Any]) -> dict[str, Any]:
    return {
        "id": own_workflow_id(r.tenant, r.id),
        "tenant": r.tenant,
        "definition": r.definition_name,
        "version": r.definition_version,
        "status": r.status,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "completed_at": r.completed_at,
        "last_sequence": r.last_sequence,
        "parent_workflow_id": _own(r.tenant, r.parent_workflow_id),
    }


def list_workflows(
    bind: Bind,
    tenant: str,
    *,
    status: str | Collection[str] | None = None,
    definition: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    id_prefix: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[WorkflowSummary], str | None]:
    """A page of the tenant's workflows, newest first, and the cursor of the next page.

    ``created_after`` is inclusive, ``created_before`` exclusive; ``id_prefix`` keeps the
    ids that start with it (``%`` and ``_`` match themselves). ``next_cursor`` is None on
    the last page.
    """
    wi = workflow_instances
    limit = max(1, min(limit, MAX_LIMIT))
    conds = [wi.c.tenant == tenant]
    if isinstance(status, str):
        conds.append(wi.c.status == status)
    elif status is not None:
        conds.append(wi.c.status.in_(list(status)))
    if definition is not None:
        conds.append(wi.c.definition_name == definition)
    if created_after is not None:
        conds.append(wi.c.created_at >= created_after)
    if created_before is not None:
        conds.append(wi.c.created_at < created_before)
    if id_prefix:
        conds.append(wi.c.id.startswith(id_prefix, autoescape=True))
    if cursor is not None:
        at, after_key = decode_cursor(cursor)
        conds.append(tuple_(wi.c.created_at, wi.c.id) < tuple_(at, after_key))
    query = (
        select(wi).where(and_(*conds))
        .order_by(wi.c.created_at.desc(), wi.c.id.desc()).limit(limit + 1)
    )
    with _connect(bind) as conn:
        rows = list(conn.execute(query))
    items = [WorkflowSummary(**_summary_fields(r)) for r in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return items, (encode_cursor(last.created_at, last.id) if last is not None else None)


def get_workflow(bind: Bind, tenant: str, workflow_id: str) -> WorkflowDetail | None:
    """The tenant's workflow ``workflow_id`` with its steps, or None (it has none such)."""
    wi, se = workflow_instances, step_executions
    key = _key(tenant, workflow_id)
    if key is None:
        return None
    with _connect(bind) as conn:
        row = conn.execute(select(wi).where(wi.c.id == key, wi.c.tenant == tenant)).first()
        if row is None:
            return None
        steps = conn.execute(
            select(se).where(se.c.workflow_id == key)
            .order_by(se.c.first_sequence, se.c.step_id)
        ).all()
    return WorkflowDetail(
        **_summary_fields(row),
        input=row.input,
        output=row.output,
        error=row.error,
        parent_step_id=row.parent_step_id,
        steps=tuple(_step_view(tenant, s) for s in steps),
    )


def _step_view(tenant: str, row: Row[Any]) -> StepView:
    fields = {k: v for k, v in row._asdict().items() if k not in {"workflow_id", "first_sequence"}}
    fields["child_workflow_id"] = _own(tenant, fields["child_workflow_id"])
    return StepView(**fields)


#: Event payload fields that hold a workflow key: shown as the tenant's own ids.
_KEY_FIELDS = ("parent_workflow_id", "child_workflow_id")


def _event_view(tenant: str, row: Row[Any]) -> EventView:
    fields = {k: v for k, v in row._asdict().items() if k != "workflow_id"}
    payload = fields["payload"]
    if isinstance(payload, dict) and any(isinstance(payload.get(f), str) for f in _KEY_FIELDS):
        fields["payload"] = {
            k: own_workflow_id(tenant, v) if k in _KEY_FIELDS and isinstance(v, str) else v
            for k, v in payload.items()
        }
    return EventView(**fields)


def workflow_status(bind: Bind, tenant: str, workflow_id: str) -> str | None:
    """The status of the tenant's workflow ``workflow_id`` (None: it has none such)."""
    wi = workflow_instances
    key = _key(tenant, workflow_id)
    if key is None:
        return None
    with _connect(bind) as conn:
        status: str | None = conn.execute(
            select(wi.c.status).where(wi.c.id == key, wi.c.tenant == tenant)
        ).scalar_one_or_none()
    return status


def get_history(
    bind: Bind, tenant: str, workflow_id: str, *, after_sequence: int = 0, limit: int = 100
) -> list[EventView] | None:
    """Events after ``after_sequence`` in order (at most ``limit``); None: no such workflow."""
    wi, we = workflow_instances, workflow_events
    limit = max(1, min(limit, 10 * MAX_LIMIT))
    key = _key(tenant, workflow_id)
    if key is None:
        return None
    with _connect(bind) as conn:
        owner = conn.execute(select(wi.c.id).where(wi.c.id == key, wi.c.tenant == tenant)).first()
        if owner is None:
            return None
        rows = conn.execute(
            select(we).where(we.c.workflow_id == key, we.c.sequence > after_sequence)
            .order_by(we.c.sequence).limit(limit)
        ).all()
    return [_event_view(tenant, r) for r in rows]


def _definition(r: Row[Any]) -> DefinitionView:
    return DefinitionView(tenant=r.tenant, name=r.name, version=r.version,
                          definition=r.definition, registered_at=r.registered_at)


def list_definitions(bind: Bind, tenant: str, *, name: str | None = None) -> list[DefinitionView]:
    """The tenant's definitions (every version), by name then version."""
    wd = workflow_definitions
    query = select(wd).where(wd.c.tenant == tenant)
    if name is not None:
        query = query.where(wd.c.name == name)
    with _connect(bind) as conn:
        rows = conn.execute(query.order_by(wd.c.name, wd.c.version)).all()
    return [_definition(r) for r in rows]


def get_definition(
    bind: Bind, tenant: str, name: str, version: int | None = None
) -> DefinitionView | None:
    """One version of a definition (None: the latest), or None when unknown."""
    wd = workflow_definitions
    query = select(wd).where(wd.c.tenant == tenant, wd.c.name == name)
    query = (query.where(wd.c.version == version) if version is not None
             else query.order_by(wd.c.version.desc()).limit(1))
    with _connect(bind) as conn:
        row = conn.execute(query).first()
    return None if row is None else _definition(row)


def definition_version(
    bind: Bind, tenant: str, name: str, version: int | None = None
) -> int | None:
    """``version`` if the tenant registered it (None: its latest version), else None.

    :func:`get_definition` without the body: what a start needs to pin a version.
    """
    wd = workflow_definitions
    query = select(wd.c.version).where(wd.c.tenant == tenant, wd.c.name == name)
    query = (query.where(wd.c.version == version) if version is not None
             else query.order_by(wd.c.version.desc()).limit(1))
    with _connect(bind) as conn:
        found: int | None = conn.execute(query).scalar_one_or_none()
    return found


def wait_for_status(
    bind: Bind,
    tenant: str,
    workflow_id: str,
    *,
    statuses: Collection[str] = TERMINAL_STATUSES,
    timeout: float,
    interval: float = 0.1,
) -> WorkflowDetail | None:
    """Poll until the workflow has one of ``statuses`` or ``timeout`` (s) passes.

    Returns the last detail read (check its ``status``), or None if it never appeared.
    """
    deadline = time.monotonic() + timeout
    while True:
        detail = get_workflow(bind, tenant, workflow_id)
        if (detail is not None and detail.status in statuses) or time.monotonic() >= deadline:
            return detail
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

