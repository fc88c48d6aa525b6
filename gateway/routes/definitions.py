"""``/v1/definitions``: register workflow definitions and read the caller's tenant's ones.

Registering validates with :mod:`foldflow.definitions` (every problem, with its path, in a
422; in a worker thread, so a large definition never stalls other requests) and publishes
``definition.registered.v1`` to ``wf.definitions`` keyed by
:func:`~foldflow.schemas.messages.definition_key` (tenant, name and version). The answer waits
for the broker's ack, then (bounded) until the definition is readable, then
``gateway_definition_cache_s`` more (how long a gateway reuses a latest version it read,
:mod:`foldflow.gateway.versions`): a 201 means every read after it sees the new version, so a
start that names no version runs it (read-your-writes, on every gateway of the database).
Acked but not readable in time is a 202: registered, but pin its version to start it
until GET shows it. Each tenant has its own namespace: re-registering identical content
is a no-op (200), different content under a version the caller's tenant holds is a 409,
and what other tenants registered is neither visible nor in the way.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Path, Request, Response

from foldflow.definitions import Definition, DefinitionError
from foldflow.gateway.commands import envelope_for
from foldflow.gateway.deps import Ctx, DefinitionWriter, JsonBody, WorkflowReader
from foldflow.gateway.errors import FieldProblem, ProblemError, problems
from foldflow.gateway.jsonbody import body_location
from foldflow.gateway.schemas import NAME_PATTERN, DefinitionPage, DefinitionPublic
from foldflow.schemas.messages import DefinitionRegistered, definition_key, dump_json

__all__ = ["router"]

router = APIRouter(prefix="/v1/definitions", tags=["definitions"])

#: How long a registration waits, after the ack, for the definition to become readable.
VISIBLE_WAIT_S = 10.0

NameParam = Annotated[str, Path(max_length=200, pattern=NAME_PATTERN)]
VersionParam = Annotated[int, Path(ge=1, le=2**31 - 1)]
_READ_ERRORS = problems(401, 403, 422, 429, 503)
EXAMPLE = {
    "name": "order",
    "version": 1,
    "steps": [
        {"id": "charge", "task": "builtin.echo", "input": {"amount": "${input.amount}"}},
        {"id": "ship", "task": "builtin.echo", "after": ["charge"]},
    ],
}


def _validated(body: dict[str, Any]) -> tuple[Definition, str]:
    """The definition and its canonical JSON, or a 422 listing every problem.

    CPU-bound (linear in the definition's size, which docs/limits.md bounds): the route
    runs it in a worker thread.
    """
    try:
        definition = Definition.from_data(body)
    except DefinitionError as exc:
        raise ProblemError(
            422,
            f"the definition has {len(exc.problems)} problem(s)",
            kind="invalid-definition",
            errors=[FieldProblem(location=body_location(p.path), message=p.message)
                    for p in exc.problems],
        ) from exc  # fmt: skip
    return definition, definition.canonical_json()


@router.post(
    "",
    status_code=201,
    response_model=DefinitionPublic,
    summary="Register a definition version",
    dependencies=[JsonBody],
    responses={
        200: {"model": DefinitionPublic, "description": "already registered, same content"},
        201: {
            "description": "registered (acked by Kafka) and readable: a start without a "
            "version runs it",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        202: {
            "model": DefinitionPublic,
            "description": "registered (acked by Kafka), not readable yet: pin its version",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **problems(400, 401, 403, 409, 413, 415, 422, 429, 503),
    },
)
async def register_definition(
    body: Annotated[
        dict[str, Any],
        Body(
            description="a workflow definition (docs/definitions.md) as JSON",
            json_schema_extra={"required": ["name", "steps"]},
            examples=[EXAMPLE],
        ),
    ],
    caller: DefinitionWriter,
    ctx: Ctx,
    request: Request,
    response: Response,
) -> DefinitionPublic:
    """Validate a definition and publish it for the caller's tenant."""
    definition, canonical = await anyio.to_thread.run_sync(_validated, body)
    name, version = definition.name, definition.version
    existing = await ctx.reads.get_definition(caller.tenant, name, version)
    if existing is not None:
        if dump_json(existing.definition) != canonical:
            raise ProblemError(
                409, f"{name} version {version} is already registered with other content; "
                "register a new version", kind="definition-exists",
            )  # fmt: skip
        response.status_code = 200
        return existing
    key = definition_key(caller.tenant, name, version)
    envelope = envelope_for(
        key,
        DefinitionRegistered(name=name, version=version, tenant=caller.tenant,
                             definition_json=canonical),
        tenant=caller.tenant,
        correlation_id=request.state.request_id,
    )  # fmt: skip
    await ctx.commands.send(ctx.topology.definitions, envelope, key=key)
    response.headers["Location"] = f"/v1/definitions/{name}/{version}"
    wait_s = min(VISIBLE_WAIT_S, ctx.settings.gateway_max_wait_s)
    if not await ctx.reads.wait_for_definition(caller.tenant, name, version, wait_s=wait_s):
        response.status_code = 202
    else:  # every gateway forgets the latest version it read before (foldflow.gateway.versions)
        await asyncio.sleep(ctx.settings.gateway_definition_cache_s)
    return DefinitionPublic(
        name=name,
        version=version,
        definition=json.loads(canonical),
        registered_at=datetime.fromtimestamp(envelope.timestamp / 1000, tz=UTC),
    )


@router.get("", response_model=DefinitionPage, summary="List definitions", responses=_READ_ERRORS)
async def list_definitions(caller: WorkflowReader, ctx: Ctx) -> DefinitionPage:
    """Every version of every definition of the caller's tenant, by name then version."""
    return DefinitionPage(items=await ctx.reads.list_definitions(caller.tenant))


@router.get(
    "/{name}",
    response_model=DefinitionPublic,
    summary="The latest version of a definition",
    responses=problems(401, 403, 404, 422, 429, 503),
)
async def get_latest_definition(
    name: NameParam, caller: WorkflowReader, ctx: Ctx
) -> DefinitionPublic:
    """The highest registered version of ``name``."""
    return _found(await ctx.reads.get_definition(caller.tenant, name, None), name)


@router.get(
    "/{name}/{version}",
    response_model=DefinitionPublic,
    summary="One version of a definition",
    responses=problems(401, 403, 404, 422, 429, 503),
)
async def get_definition_version(
    name: NameParam, version: VersionParam, caller: WorkflowReader, ctx: Ctx
) -> DefinitionPublic:
    """Version ``version`` of ``name``."""
    return _found(await ctx.reads.get_definition(caller.tenant, name, version), name, version)


def _found(
    definition: DefinitionPublic | None, name: str, version: int | None = None
) -> DefinitionPublic:
    if definition is None:
        which = f"{name} version {version}" if version is not None else name
        raise ProblemError(404, f"no definition {which}", kind="not-found")
    return definition
