"""The read side as the API shows it: :mod:`foldflow.projections.queries` results as public bodies.

Every call of :class:`Reads` is timed (:func:`foldflow.gateway.db.call_db`), tenant-scoped, and
turns projection views into :mod:`foldflow.gateway.schemas` models. Each tenant has its own
workflow ids and definitions, so no read ever needs to look at another tenant's rows: a
workflow id another tenant also uses is simply not found.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Engine

from foldflow.gateway.db import call_db
from foldflow.gateway.errors import FieldProblem, ProblemError
from foldflow.gateway.schemas import (
    DefinitionPublic,
    EventPublic,
    StepPublic,
    WorkflowPublic,
    WorkflowSummary,
)
from foldflow.projections import queries

__all__ = ["Reads"]


def _summary(view: queries.WorkflowSummary) -> WorkflowSummary:
    return WorkflowSummary.model_validate(
        {
            "id": view.id,
            "definition": view.definition,
            "version": view.version,
            "status": view.status,
            "parent_workflow_id": view.parent_workflow_id,
            "created_at": view.created_at,
            "updated_at": view.updated_at,
            "completed_at": view.completed_at,
        }
    )


def _detail(view: queries.WorkflowDetail) -> WorkflowPublic:
    return WorkflowPublic(
        **_summary(view).model_dump(),
        input=view.input,
        output=view.output,
        error=view.error,
        steps=[
            StepPublic(
                id=s.step_id,
                status=s.status,
                task_type=s.task_type,
                attempts=s.attempts,
                input=s.input,
                output=s.output,
                error=s.error,
                started_at=s.started_at,
                completed_at=s.completed_at,
                compensation_status=s.compensation_status,
            )
            for s in view.steps
        ],
    )


def _definition(view: queries.DefinitionView) -> DefinitionPublic:
    body = view.definition if isinstance(view.definition, dict) else {}
    return DefinitionPublic(
        name=view.name, version=view.version, definition=body, registered_at=view.registered_at
    )


class Reads:
    """Timed, tenant-scoped reads of the projections (``engine`` is the gateway's)."""

    def __init__(self, engine: Engine, *, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s

    async def list_workflows(
        self,
        tenant: str,
        *,
        status: Collection[str] | None,
        definition: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        limit: int,
        cursor: str | None,
        id_prefix: str | None = None,
    ) -> tuple[list[WorkflowSummary], str | None]:
        """A page of the tenant's workflows; an invalid cursor is a 422 problem."""
        try:
            views, next_cursor = await call_db(
                self.timeout_s, queries.list_workflows, self.engine, tenant,
                status=status or None, definition=definition, created_after=created_after,
                created_before=created_before, id_prefix=id_prefix, limit=limit, cursor=cursor,
            )  # fmt: skip
        except queries.InvalidCursorError as exc:
            raise ProblemError(
                422, "invalid cursor", kind="invalid-request",
                errors=[FieldProblem(location="query.cursor", message=str(exc), type="cursor")],
            ) from exc  # fmt: skip
        return [_summary(v) for v in views], next_cursor

    async def get_workflow(self, tenant: str, workflow_id: str) -> WorkflowPublic | None:
        """The tenant's workflow, or None."""
        view = await call_db(self.timeout_s, queries.get_workflow, self.engine, tenant, workflow_id)
        return None if view is None else _detail(view)

    async def wait_for_workflow(
        self, tenant: str, workflow_id: str, *, statuses: Collection[str], wait_s: float
    ) -> WorkflowPublic | None:
        """Poll until the workflow has one of ``statuses`` or ``wait_s`` passes.

        The interval grows from 50 ms to 500 ms; the last state read is returned (or None).
        """
        deadline = time.monotonic() + wait_s
        interval = 0.05
        while True:
            found = await self.get_workflow(tenant, workflow_id)
            remaining = deadline - time.monotonic()
            if (found is not None and found.status in statuses) or remaining <= 0:
                return found
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.5)

    async def get_history(
        self, tenant: str, workflow_id: str, *, after_sequence: int, limit: int
    ) -> list[EventPublic] | None:
        """Events after ``after_sequence`` (None: no such workflow for this tenant)."""
        views = await call_db(
            self.timeout_s, queries.get_history, self.engine, tenant, workflow_id,
            after_sequence=after_sequence, limit=limit,
        )  # fmt: skip
        if views is None:
            return None
        return [EventPublic.model_validate(v, from_attributes=True) for v in views]

    async def list_definitions(
        self, tenant: str, *, name: str | None = None
    ) -> list[DefinitionPublic]:
        """The tenant's definitions, every version, by name then version."""
        views = await call_db(
            self.timeout_s, queries.list_definitions, self.engine, tenant, name=name
        )
        return [_definition(v) for v in views]

    async def get_definition(
        self, tenant: str, name: str, version: int | None
    ) -> DefinitionPublic | None:
        """One version of the tenant's definition (None: latest), or None."""
        view = await call_db(
            self.timeout_s, queries.get_definition, self.engine, tenant, name, version
        )
        return None if view is None else _definition(view)

    async def definition_version(self, tenant: str, name: str, version: int | None) -> int | None:
        """``version`` if the tenant has it (None: the latest version), else None."""
        return await call_db(
            self.timeout_s, queries.definition_version, self.engine, tenant, name, version
        )

    async def wait_for_definition(
        self, tenant: str, name: str, version: int, *, wait_s: float
    ) -> bool:
        """Poll until the tenant's definition ``name`` has ``version``; False after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        interval = 0.02
        while await self.get_definition(tenant, name, version) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.25)
        return True

    async def workflow_status(self, tenant: str, workflow_id: str) -> str | None:
        """The status of the tenant's workflow (None: the tenant has no such workflow)."""
        return await call_db(
            self.timeout_s, queries.workflow_status, self.engine, tenant, workflow_id
        )
