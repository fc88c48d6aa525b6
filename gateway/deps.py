"""``Annotated`` dependency aliases the routes declare (the full-stack-fastapi-template way).

``Ctx`` is the app's :class:`~foldflow.gateway.context.GatewayContext`; ``WorkflowReader``,
``WorkflowWriter`` and ``DefinitionWriter`` are the authenticated caller, checked for the
scope the route needs (reading definitions needs ``workflows:read``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from foldflow.gateway.auth import Principal
from foldflow.gateway.context import GatewayContext
from foldflow.gateway.errors import ProblemError

__all__ = [
    "Caller",
    "Ctx",
    "DefinitionWriter",
    "JsonBody",
    "WorkflowReader",
    "WorkflowWriter",
    "context_of",
    "get_context",
    "get_principal",
    "require_json",
]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (`ffk_...`) or a JWT with `tenant` and `scope`/`scopes` claims.",
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An API key."
)


def context_of(request: Request) -> GatewayContext:
    """The app's context (set by ``create_app``)."""
    context: GatewayContext = request.app.state.gateway
    return context


async def get_context(request: Request) -> GatewayContext:
    """:func:`context_of` as a dependency (``async``: FastAPI calls a plain ``def``
    dependency in a worker thread, a thread hop on every request)."""
    return context_of(request)


Ctx = Annotated[GatewayContext, Depends(get_context)]


async def get_principal(
    request: Request,
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The authenticated caller (401 problem when there is none)."""
    credential = api_key or (bearer.credentials if bearer else None)
    client = request.client.host if request.client else "unknown"
    principal = await ctx.authenticator.authenticate(credential, client=client)
    request.state.tenant = principal.tenant
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def _needs(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: Caller) -> Principal:
        principal.require(scope)
        return principal

    dependency.__name__ = f"needs_{scope.replace(':', '_')}"
    return dependency


WorkflowReader = Annotated[Principal, Depends(_needs("workflows:read"))]
WorkflowWriter = Annotated[Principal, Depends(_needs("workflows:write"))]
DefinitionWriter = Annotated[Principal, Depends(_needs("definitions:write"))]


async def require_json(request: Request) -> None:
    """415 problem when a request carries a body that is not JSON."""
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ProblemError(
            415,
            f"send the body as application/json (got {media_type or 'no content type'})",
            kind="unsupported-media-type",
        )


JsonBody = Depends(require_json)
