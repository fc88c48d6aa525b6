"""The web console at ``/ui``: workflows, definitions and dead letters in a browser.

Server-rendered pages (Jinja2) with a little htmx (vendored in ``static/``, no CDN) for
live updates and actions without full reloads; DAGs and timelines are SVG drawn by the
server (:mod:`foldflow.gateway.ui.dag`, :mod:`foldflow.gateway.ui.timeline`). Login is an
API key or a JWT, kept in an encrypted HttpOnly cookie and authenticated again on each
request (:mod:`foldflow.gateway.ui.session`); the tenant and scopes are the API's.
``install`` adds it to the gateway app.
"""

from __future__ import annotations

from fastapi import FastAPI

from foldflow.gateway.context import GatewayContext
from foldflow.gateway.ui import definitions, dlq, login, workflows
from foldflow.gateway.ui.access import Console
from foldflow.gateway.ui.session import SessionCodec

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the console on ``app`` (after ``app.state.gateway`` is set)."""
    ctx: GatewayContext = app.state.gateway
    settings = ctx.settings
    secret = settings.ui_session_secret
    codec = (
        SessionCodec(secret.get_secret_value().encode(), ttl_s=settings.ui_session_ttl_s)
        if secret is not None
        else SessionCodec.random(ttl_s=settings.ui_session_ttl_s)
    )
    app.state.console = Console(codec=codec, secure_cookie=settings.ui_secure_cookie)
    for module in (login, workflows, definitions, dlq):
        app.include_router(module.router)
