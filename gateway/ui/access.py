"""Who looks at the console: the session behind the cookie, authenticated as the API
authenticates, and the CSRF check every action passes.

A request without a valid session is sent to the login page (a redirect, or
``HX-Redirect`` for an htmx request). Errors the API would answer as problem+json are
rendered as the console's error page (or an error note, for htmx requests) by
:class:`UiRoute`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from foldflow.gateway.auth import Principal
from foldflow.gateway.context import GatewayContext
from foldflow.gateway.deps import context_of
from foldflow.gateway.errors import ProblemError
from foldflow.gateway.ui.render import html
from foldflow.gateway.ui.session import SESSION_COOKIE, Session, SessionCodec

__all__ = [
    "Console",
    "LoginRequired",
    "UiRoute",
    "Viewer",
    "ViewerDep",
    "get_console",
    "require_csrf",
]

log = logging.getLogger("foldflow.gateway.ui")
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Console:
    """The console's per-app state (set by :func:`foldflow.gateway.ui.install`)."""

    codec: SessionCodec
    secure_cookie: bool


def get_console(request: Request) -> Console:
    """The app's console state."""
    console: Console = request.app.state.console
    return console


class LoginRequired(Exception):
    """No session, or one whose credential no longer authenticates."""


@dataclass(frozen=True)
class Viewer:
    """The logged-in caller: the API's principal, their session and CSRF token."""

    principal: Principal
    session: Session
    csrf: str
    ctx: GatewayContext

    @property
    def tenant(self) -> str:
        """The tenant every read and command is scoped to."""
        return self.principal.tenant

    def can(self, scope: str) -> bool:
        """Whether the caller holds ``scope`` (the template hides what they cannot do)."""
        return scope in self.principal.scopes


async def get_viewer(request: Request) -> Viewer:
    """The caller behind the session cookie; :class:`LoginRequired` when there is none."""
    console = get_console(request)
    ctx = context_of(request)
    session = console.codec.open(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired
    try:
        principal = await ctx.authenticator.authenticate(session.credential)
    except ProblemError as exc:
        if exc.status == 401:
            raise LoginRequired from exc
        raise
    request.state.tenant = principal.tenant
    return Viewer(principal=principal, session=session,
                  csrf=console.codec.csrf_token(session.nonce), ctx=ctx)  # fmt: skip


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


async def require_csrf(request: Request, viewer: ViewerDep) -> Viewer:
    """The viewer, once the request proved it comes from a console page (403 if not)."""
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        token = field if isinstance(field, str) else None
    if not get_console(request).codec.csrf_ok(viewer.session.nonce, token):
        raise ProblemError(403, "the form is stale or did not come from the console: "
                           "reload the page and try again", kind="csrf")  # fmt: skip
    return viewer


def login_redirect(request: Request) -> Response:
    """To the login page, then back here."""
    target = "/ui/login?next=" + quote(request.url.path, safe="/")
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, error: ProblemError) -> Response:
    """A problem as the console shows it: a page, or a note in ``#flash`` for htmx."""
    if request.headers.get("HX-Request"):
        return html("_flash.html", {"level": "error", "message": error.detail or str(error)},
                    status=error.status,
                    headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})  # fmt: skip
    return html("error.html", {"status": error.status, "message": error.detail or str(error),
                               "viewer": None}, status=error.status)  # fmt: skip


class UiRoute(APIRoute):
    """A console route: a missing session redirects to the login page, problems render
    as HTML instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except ProblemError as error:
                return error_page(request, error)

        return guarded


def route_options() -> dict[str, Any]:
    """Options every console route shares."""
    return {"include_in_schema": False, "response_class": Response}
