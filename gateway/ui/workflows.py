"""The console's workflow pages: the list (filters, keyset paging, live rows), a
workflow (DAG, timeline, steps, input/output/error, history, parent and children, live),
and the actions (signal, pause, resume, cancel, terminate).

Reads go through the same tenant-scoped projection queries the API serves; actions call
the API's own route functions, so the checks (the workflow exists for this tenant, it is
not finished) and the command on Kafka are the API's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from foldflow.gateway.db import call_db
from foldflow.gateway.errors import ProblemError
from foldflow.gateway.routes import commands as api
from foldflow.gateway.schemas import (
    TERMINAL_STATUSES,
    WORKFLOW_STATUSES,
    CommandCreate,
    SignalCreate,
)
from foldflow.gateway.ui import dag, timeline
from foldflow.gateway.ui.access import UiRoute, Viewer, ViewerDep, require_csrf
from foldflow.gateway.ui.render import html
from foldflow.projections import queries

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

PAGE_SIZE = 50
#: The most events a workflow page reads (the timeline and the history table).
HISTORY_LIMIT = 2000
_STEP_STATE = {"scheduled": "running"}  # the projection's word → the drawing's
Action = Literal["signal", "pause", "resume", "cancel", "terminate"]
_COMMANDS = {
    "pause": api.pause_workflow,
    "resume": api.resume_workflow,
    "cancel": api.cancel_workflow,
    "terminate": api.terminate_workflow,
}


def _instant(text: str | None, field: str) -> datetime | None:
    """A ``datetime-local`` (or ISO 8601) value; UTC unless it names its zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProblemError(422, f"{field}: not a date and time: {text!r}",
                           kind="invalid-request") from exc  # fmt: skip
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _page(viewer: Viewer, filters: dict[str, Any]) -> dict[str, Any]:
    statuses = [s for s in filters["status"] if s in WORKFLOW_STATUSES]
    items, next_cursor = await viewer.ctx.reads.list_workflows(
        viewer.tenant, status=statuses or None, definition=filters["definition"] or None,
        created_after=_instant(filters["created_after"], "created after"),
        created_before=_instant(filters["created_before"], "created before"),
        limit=PAGE_SIZE, cursor=filters["cursor"] or None, id_prefix=filters["q"] or None,
    )  # fmt: skip
    return {"items": items, "next_cursor": next_cursor, "filters": filters,
            "live": not filters["cursor"]}  # fmt: skip


def _filters(
    status: Annotated[list[str] | None, Query(max_length=20)] = None,
    definition: Annotated[str, Query(max_length=200)] = "",
    created_after: Annotated[str, Query(max_length=40)] = "",
    created_before: Annotated[str, Query(max_length=40)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=1000)] = "",
) -> dict[str, Any]:
    return {"status": status or [], "definition": definition, "created_after": created_after,
            "created_before": created_before, "q": q.strip(), "cursor": cursor}  # fmt: skip


Filters = Annotated[dict[str, Any], Depends(_filters)]


@router.get("/workflows", response_class=Response)
async def workflows_page(viewer: ViewerDep, filters: Filters) -> Response:
    """The tenant's workflows, newest first, filtered, a page at a time."""
    definitions = sorted({d.name for d in await viewer.ctx.reads.list_definitions(viewer.tenant)})
    context = await _page(viewer, filters)
    return html("workflows.html", {**context, "viewer": viewer, "statuses": WORKFLOW_STATUSES,
                                   "definitions": definitions, "nav": "workflows"})  # fmt: skip


@router.get("/fragments/workflows", response_class=Response)
async def workflow_rows(viewer: ViewerDep, filters: Filters) -> Response:
    """The list's rows (polled while the first page is shown)."""
    return html("_workflow_rows.html", {**await _page(viewer, filters), "viewer": viewer})


async def _detail(viewer: Viewer, workflow_id: str) -> queries.WorkflowDetail:
    found = await call_db(viewer.ctx.settings.gateway_db_timeout_s, queries.get_workflow,
                          viewer.ctx.engine, viewer.tenant, workflow_id)  # fmt: skip
    if found is None:
        raise ProblemError(404, f"no workflow {workflow_id}", kind="not-found")
    return found


async def _history(viewer: Viewer, workflow_id: str, after: int = 0) -> list[queries.EventView]:
    events = await call_db(
        viewer.ctx.settings.gateway_db_timeout_s, queries.get_history, viewer.ctx.engine,
        viewer.tenant, workflow_id, after_sequence=after, limit=HISTORY_LIMIT,
    )  # fmt: skip
    return events or []


async def _definition_of(
    viewer: Viewer, workflow: queries.WorkflowDetail, events: list[queries.EventView]
) -> dict[str, Any] | None:
    """The definition the workflow runs: the one pinned in its start event, else the
    registered version."""
    for event in events[:1]:
        pinned = event.payload.get("definition")
        if event.event_type == "workflow.started.v1" and isinstance(pinned, dict):
            return pinned
    found = await viewer.ctx.reads.get_definition(viewer.tenant, workflow.definition,
                                                  workflow.version)  # fmt: skip
    return found.definition if found is not None else None


def _actions(viewer: Viewer, workflow: queries.WorkflowDetail) -> list[str]:
    if not viewer.can("workflows:write") or workflow.status in TERMINAL_STATUSES:
        return []
    actions = ["signal"]
    if workflow.status == "running":
        actions.append("pause")
    if workflow.status == "paused":
        actions.append("resume")
    return [*actions, "cancel", "terminate"]


async def _live(viewer: Viewer, workflow_id: str) -> dict[str, Any]:
    workflow = await _detail(viewer, workflow_id)
    events = await _history(viewer, workflow_id)
    definition = await _definition_of(viewer, workflow, events)
    steps = dag.steps_of(definition)
    states = {s.step_id: (_STEP_STATE.get(s.status, s.status), s.attempts,
                          s.compensation_status) for s in workflow.steps}  # fmt: skip
    signals = sorted({s.detail for s in steps if s.kind == "signal"})
    waiting = [s.step_id for s in workflow.steps if s.status == "waiting"]
    waiting_signals = [s.detail for s in steps if s.kind == "signal" and s.id in waiting]
    return {
        "wf": workflow,
        "terminal": workflow.terminal,
        "layout": dag.layout(steps, states),
        "timeline": timeline.build(events, now=datetime.now(UTC), finished=workflow.terminal),
        "actions": _actions(viewer, workflow),
        "signals": waiting_signals + [s for s in signals if s not in waiting_signals],
        "children": [s for s in workflow.steps if s.child_workflow_id],
        "viewer": viewer,
        "events": events,
    }


@router.get("/workflows/{workflow_id:path}", response_class=Response)
async def workflow_page(viewer: ViewerDep, workflow_id: str) -> Response:
    """One workflow, updating itself until it ends."""
    live = await _live(viewer, workflow_id)
    return html("workflow.html", {**live, "nav": "workflows",
                                  "truncated": len(live["events"]) >= HISTORY_LIMIT})  # fmt: skip


@router.get("/fragments/workflow", response_class=Response)
async def workflow_live(viewer: ViewerDep,
                        id: Annotated[str, Query(max_length=1000)]) -> Response:  # fmt: skip
    """The changing part of a workflow page (polled until the workflow ends)."""
    return html("_workflow_live.html", await _live(viewer, id))


@router.get("/fragments/events", response_class=Response)
async def workflow_events(
    viewer: ViewerDep,
    id: Annotated[str, Query(max_length=1000)],
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """History rows after sequence ``after``, and the poller that asks for the next ones."""
    workflow = await _detail(viewer, id)
    events = await _history(viewer, id, after)
    last = events[-1].sequence if events else after
    return html("_event_rows.html", {"events": events, "wf": workflow, "after": last,
                                     "terminal": workflow.terminal, "oob": True})  # fmt: skip


def _field(form: Any, name: str, *, limit: int) -> str:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise ProblemError(422, f"{name}: expected text", kind="invalid-request")
    if value is not None and len(value) > limit:
        raise ProblemError(422, f"{name}: longer than {limit} characters", kind="invalid-request")
    return value or ""


@router.post("/actions/{action}", response_class=Response)
async def act(request: Request, action: Action,
              viewer: Annotated[Viewer, Depends(require_csrf)]) -> Response:  # fmt: skip
    """Send a command to a workflow, as ``POST /v1/workflows/{id}/<action>`` would."""
    viewer.principal.require("workflows:write")
    form = await request.form()
    workflow_id = _field(form, "id", limit=1000)
    idempotency_key = _field(form, "idempotency_key", limit=200) or None
    reason = _field(form, "reason", limit=1000) or None
    common: dict[str, Any] = {"workflow_id": workflow_id, "caller": viewer.principal,
                              "ctx": viewer.ctx, "request": request,
                              "idempotency_key": idempotency_key}  # fmt: skip
    if action == "signal":
        raw = _field(form, "data", limit=viewer.ctx.settings.gateway_max_body_bytes)
        try:
            body = SignalCreate(name=_field(form, "name", limit=200),
                                data=json.loads(raw) if raw.strip() else None)  # fmt: skip
        except json.JSONDecodeError as exc:
            raise ProblemError(422, f"data: not JSON: {exc}", kind="invalid-request") from exc
        except ValidationError as exc:
            raise ProblemError(422, f"signal: {exc.errors()[0]['msg']}",
                               kind="invalid-request") from exc  # fmt: skip
        accepted = await api.signal_workflow(body=body, **common)
        message = f"Signal {body.name!r} sent to {workflow_id}."
    else:
        accepted = await _COMMANDS[action](body=CommandCreate(reason=reason), **common)
        message = f"{action.capitalize()} sent to {workflow_id}."
    message += f" Kafka acked {accepted.command}; the page shows its effect in a moment."
    if request.headers.get("HX-Request"):
        return html("_flash.html", {"level": "ok", "message": message})
    return RedirectResponse(f"/ui/workflows/{quote(workflow_id, safe='')}", status_code=303)
