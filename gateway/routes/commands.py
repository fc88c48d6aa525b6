"""``/v1/workflows/{id}/cancel|pause|resume|terminate|signals``: steer a workflow.

Each answers 202 once Kafka acked the command. The projection is checked first: a
workflow the caller's tenant does not have is 404 (another tenant's workflow of the same
id is a different workflow), a finished one 409. The command is keyed by the workflow's
:func:`~foldflow.schemas.messages.workflow_key` and names the caller's tenant, which the
orchestrator checks again. With an ``Idempotency-Key`` the command's id is deterministic,
so a retried request is applied once (the orchestrator remembers the inputs it applied).
A child's id (``<parent>/<step>``) is a path (:mod:`foldflow.gateway.paths`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.types import DecoratedCallable

from foldflow.gateway.commands import command_id_for_key, envelope_for
from foldflow.gateway.context import GatewayContext
from foldflow.gateway.deps import Ctx, JsonBody, WorkflowWriter
from foldflow.gateway.errors import ProblemError, problems
from foldflow.gateway.paths import WorkflowIdPath
from foldflow.gateway.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    TERMINAL_STATUSES,
    CommandAccepted,
    CommandCreate,
    SignalCreate,
)
from foldflow.schemas.messages import (
    TYPE_NAMES,
    CancelWorkflow,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    TerminateWorkflow,
    dump_json,
    workflow_key,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           pattern=IDEMPOTENCY_KEY_PATTERN,
           description="a retry with the same key is applied once"),
]  # fmt: skip
_ERRORS = problems(400, 401, 403, 404, 409, 413, 415, 422, 429, 503)


async def _send(
    ctx: GatewayContext,
    request: Request,
    tenant: str,
    workflow_id: str,
    payload: Payload,
    idempotency_key: str | None,
) -> CommandAccepted:
    """Publish a command to an existing, unfinished workflow of the caller's tenant."""
    status = await ctx.reads.workflow_status(tenant, workflow_id)
    if status is None:
        raise ProblemError(404, f"no workflow {workflow_id}", kind="not-found")
    if status in TERMINAL_STATUSES:
        raise ProblemError(409, f"workflow {workflow_id} is {status}", kind="workflow-finished")
    event_type = TYPE_NAMES[type(payload)]
    event_id = (
        command_id_for_key(tenant, idempotency_key, workflow_id, event_type)
        if idempotency_key is not None else None
    )  # fmt: skip
    envelope = envelope_for(workflow_key(tenant, workflow_id), payload, tenant=tenant,
                            event_id=event_id, correlation_id=request.state.request_id)  # fmt: skip
    await ctx.commands.send(ctx.topology.commands, envelope)
    return CommandAccepted(id=workflow_id, command=event_type)


def _route(action: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    return router.post(
        f"/{{workflow_id:path}}/{action}",
        summary=summary,
        status_code=202,
        response_model=CommandAccepted,
        dependencies=[JsonBody],
        responses={202: {"description": "the command was acked by Kafka"}, **_ERRORS},
    )


@_route("cancel", "Cancel (compensate, then end)")
async def cancel_workflow(
    caller: WorkflowWriter, workflow_id: WorkflowIdPath, ctx: Ctx, request: Request,
    body: CommandCreate | None = None, idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:  # fmt: skip
    """Compensate the completed steps, then end ``cancelled``."""
    command = CancelWorkflow(reason=body.reason if body else None)
    return await _send(ctx, request, caller.tenant, workflow_id, command, idempotency_key)


@_route("pause", "Pause (dispatch no new tasks)")
async def pause_workflow(
    caller: WorkflowWriter, workflow_id: WorkflowIdPath, ctx: Ctx, request: Request,
    body: CommandCreate | None = None, idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:  # fmt: skip
    """Stop dispatching new tasks; running ones may finish."""
    command = PauseWorkflow(reason=body.reason if body else None)
    return await _send(ctx, request, caller.tenant, workflow_id, command, idempotency_key)


@_route("resume", "Resume after a pause")
async def resume_workflow(
    caller: WorkflowWriter, workflow_id: WorkflowIdPath, ctx: Ctx, request: Request,
    body: CommandCreate | None = None, idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:  # fmt: skip
    """Dispatch again after a pause."""
    command = ResumeWorkflow(reason=body.reason if body else None)
    return await _send(ctx, request, caller.tenant, workflow_id, command, idempotency_key)


@_route("terminate", "Terminate at once")
async def terminate_workflow(
    caller: WorkflowWriter, workflow_id: WorkflowIdPath, ctx: Ctx, request: Request,
    body: CommandCreate | None = None, idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:  # fmt: skip
    """End ``terminated`` at once, without compensation."""
    command = TerminateWorkflow(reason=body.reason if body else None)
    return await _send(ctx, request, caller.tenant, workflow_id, command, idempotency_key)


@_route("signals", "Send a signal")
async def signal_workflow(
    caller: WorkflowWriter, workflow_id: WorkflowIdPath, body: SignalCreate, ctx: Ctx,
    request: Request, idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:  # fmt: skip
    """Deliver named data to the workflow (a ``signal`` step waits for it)."""
    command = SignalWorkflow(name=body.name, data_json=dump_json(body.data))
    return await _send(ctx, request, caller.tenant, workflow_id, command, idempotency_key)
