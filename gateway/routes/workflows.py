"""``/v1/workflows``: start workflows (a command on Kafka) and read them (projections).

A start answers 202 only after the broker acked its command. The workflow id is the
body's ``id``, else the deterministic one of ``Idempotency-Key``, else random; it is the
caller's tenant's own (the command is keyed by :func:`~foldflow.schemas.messages.workflow_key`),
so another tenant's workflow of the same id neither blocks it nor shows. A start whose
id already exists is a no-op in the orchestrator, so a retried POST never starts a second
workflow. A child's id (``<parent>/<step>``) is a path (:mod:`foldflow.gateway.paths`). Commands
to a running workflow live in :mod:`foldflow.gateway.routes.commands`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from foldflow.durations import DURATION_PATTERN, DurationTooLong, parse_seconds
from foldflow.gateway.commands import envelope_for, workflow_id_for_key
from foldflow.gateway.context import GatewayContext
from foldflow.gateway.deps import Ctx, JsonBody, WorkflowReader, WorkflowWriter
from foldflow.gateway.errors import FieldProblem, ProblemError, problems
from foldflow.gateway.paths import WorkflowIdPath
from foldflow.gateway.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    NAME_PATTERN,
    TERMINAL_STATUSES,
    EventPage,
    WorkflowAccepted,
    WorkflowCreate,
    WorkflowPage,
    WorkflowPublic,
    WorkflowStatus,
)
from foldflow.schemas.messages import (
    StartWorkflow,
    derived_id,
    dump_json,
    workflow_key,
)

__all__ = ["parse_timeout", "router"]

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

_DEFINITION_WAIT_S = 3.0  # a definition registered a moment ago may not be projected yet
_ACCEPTED_HEADERS = {"Location": {"schema": {"type": "string"}}}


def parse_timeout(text: str) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"`` or ``"3"`` (seconds) as seconds; ValueError otherwise
    (the one duration syntax of :mod:`foldflow.durations`). Any wait is capped, so a
    well-formed duration past the syntax's own maximum is simply long (infinite)."""
    try:
        return parse_seconds(text)
    except DurationTooLong:
        return math.inf


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def _resolve_version(ctx: GatewayContext, tenant: str, body: WorkflowCreate) -> int:
    """The caller's tenant's version to pin (waits briefly for a fresh registration)."""
    deadline = time.monotonic() + min(_DEFINITION_WAIT_S, ctx.settings.gateway_max_wait_s)
    found = await ctx.versions.resolve(tenant, body.definition, body.version)
    while found is None and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        found = await ctx.versions.resolve(tenant, body.definition, body.version)
    if found is None:
        which = body.definition + (f" version {body.version}" if body.version else "")
        raise ProblemError(
            422, f"no definition {which} is registered", kind="unknown-definition",
            errors=[FieldProblem(location="body.definition", message=f"unknown: {which}")],
        )  # fmt: skip
    return found


@router.post(
    "",
    status_code=202,
    response_model=WorkflowAccepted,
    summary="Start a workflow",
    dependencies=[JsonBody],
    responses={
        202: {"description": "the start command was acked by Kafka", "headers": _ACCEPTED_HEADERS},
        **problems(400, 401, 403, 413, 415, 422, 429, 503),
    },
)
async def start_workflow(
    body: WorkflowCreate,
    caller: WorkflowWriter,
    ctx: Ctx,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="retries with the same key start the same (one) workflow",
        ),
    ] = None,
) -> WorkflowAccepted:
    """Publish ``workflow.start.v1`` for the caller's tenant; 202 once Kafka acked it."""
    tenant = caller.tenant
    if body.id is not None:
        workflow_id = body.id
    elif idempotency_key is not None:
        workflow_id = workflow_id_for_key(tenant, idempotency_key)
    else:
        workflow_id = str(uuid.uuid4())
    response.headers["Location"] = f"/v1/workflows/{workflow_id}"
    key = workflow_key(tenant, workflow_id)

    chosen = body.id is not None or idempotency_key is not None  # a random id is new
    if chosen and await ctx.reads.workflow_status(tenant, workflow_id) is not None:
        return WorkflowAccepted(id=workflow_id)  # a retry: the orchestrator would ignore it

    version = await _resolve_version(ctx, tenant, body)
    command = StartWorkflow(
        definition_name=body.definition,
        definition_version=version,
        input_json=dump_json(body.input),
        tenant=tenant,
    )
    envelope = envelope_for(
        key, command, tenant=tenant, correlation_id=request.state.request_id,
        event_id=derived_id(key, 0),
    )  # fmt: skip
    await ctx.commands.send(ctx.topology.commands, envelope)
    return WorkflowAccepted(id=workflow_id)


@router.get(
    "",
    response_model=WorkflowPage,
    summary="List workflows",
    responses=problems(401, 403, 422, 429, 503),
)
async def list_workflows(
    caller: WorkflowReader,
    ctx: Ctx,
    status: Annotated[list[WorkflowStatus] | None, Query(description="any of these")] = None,
    definition: Annotated[str | None, Query(max_length=200, pattern=NAME_PATTERN)] = None,
    created_after: Annotated[datetime | None, Query(description="inclusive")] = None,
    created_before: Annotated[datetime | None, Query(description="exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_-]{1,1000}$", description="next_cursor of the last page"),
    ] = None,
) -> WorkflowPage:
    """The caller's tenant's workflows, newest first, a page at a time."""
    items, next_cursor = await ctx.reads.list_workflows(
        caller.tenant, status=status, definition=definition,
        created_after=_utc(created_after), created_before=_utc(created_before),
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return WorkflowPage(items=items, next_cursor=next_cursor)


# The history route comes first: its path would also match the workflow route's.
@router.get(
    "/{workflow_id:path}/events",
    response_model=EventPage,
    summary="A workflow's history",
    responses=problems(401, 403, 404, 422, 429, 503),
)
async def list_workflow_events(
    caller: WorkflowReader,  # first: a caller without credentials gets 401 for any id
    workflow_id: WorkflowIdPath,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^\d{1,18}$", description="next_cursor of the last page")
    ] = None,
) -> EventPage:
    """The workflow's events in sequence order, a page at a time."""
    after = int(cursor) if cursor else 0
    events = await ctx.reads.get_history(
        caller.tenant, workflow_id, after_sequence=after, limit=limit
    )
    if events is None:
        raise ProblemError(404, f"no workflow {workflow_id}", kind="not-found")
    next_cursor = str(events[-1].sequence) if len(events) == limit else None
    return EventPage(items=events, next_cursor=next_cursor)


@router.get(
    "/{workflow_id:path}",
    response_model=WorkflowPublic,
    summary="A workflow, optionally once it reaches a status",
    responses=problems(401, 403, 404, 422, 429, 503),
)
async def get_workflow(
    caller: WorkflowReader,  # first: a caller without credentials gets 401 for any id
    workflow_id: WorkflowIdPath,
    ctx: Ctx,
    wait_for: Annotated[
        Literal["terminal"] | WorkflowStatus | None,
        Query(description="wait until the workflow is terminal or has this status"),
    ] = None,
    timeout: Annotated[
        str,
        Query(pattern=DURATION_PATTERN, description="how long to wait (capped), e.g. 10s"),
    ] = "10s",
) -> WorkflowPublic:
    """The workflow with its steps; with ``wait_for`` the answer waits (bounded) for it."""
    if wait_for is None:
        found = await ctx.reads.get_workflow(caller.tenant, workflow_id)
    else:
        try:
            wait_s = min(parse_timeout(timeout), ctx.settings.gateway_max_wait_s)
        except ValueError as exc:
            raise ProblemError(
                422, "the timeout is not a duration this API takes", kind="invalid-request",
                errors=[FieldProblem(location="query.timeout", message=str(exc))],
            ) from exc
        statuses = TERMINAL_STATUSES if wait_for == "terminal" else frozenset({wait_for})
        found = await ctx.reads.wait_for_workflow(
            caller.tenant, workflow_id, statuses=statuses, wait_s=wait_s
        )
    if found is None:
        raise ProblemError(404, f"no workflow {workflow_id}", kind="not-found")
    return found
