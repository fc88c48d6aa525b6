"""``/ui/login``, ``/ui/logout``, ``/ui`` and the console's static files."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from foldflow.gateway.deps import context_of
from foldflow.gateway.errors import ProblemError
from foldflow.gateway.ui.access import CSRF_FIELD, UiRoute, ViewerDep, get_console, require_csrf
from foldflow.gateway.ui.render import SECURITY_HEADERS, STATIC_DIR, html
from foldflow.gateway.ui.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    MAX_CREDENTIAL_CHARS,
    SESSION_COOKIE,
)

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_LOGIN_TTL_S = 3600


def _safe_next(target: str | None) -> str:
    """Only a path of the console (never another site) to go to after the login."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//") \
            and "\\" not in target:  # fmt: skip
        return target
    return "/ui/workflows"


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    secure = get_console(request).secure_cookie or request.url.scheme == "https"
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=secure)  # fmt: skip


def _login_page(request: Request, *, error: str | None, status: int, target: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = html("login.html", {
        "csrf": get_console(request).codec.csrf_token(nonce), "error": error,
        "next": target, "viewer": None,
    }, status=status)  # fmt: skip
    _cookie(request, response, LOGIN_COOKIE, nonce, _LOGIN_TTL_S)
    return response


@router.get("", response_class=Response)
async def index() -> Response:
    """The console starts at the workflow list."""
    return RedirectResponse("/ui/workflows", status_code=303)


@router.get("/login", response_class=Response)
async def login_form(request: Request, next: str | None = None) -> Response:
    """The login form: an API key or a JWT."""
    return _login_page(request, error=None, status=200, target=_safe_next(next))


@router.post("/login", response_class=Response)
async def login(
    request: Request,
    credential: Annotated[str, Form(max_length=MAX_CREDENTIAL_CHARS)],
    csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui/workflows",
) -> Response:
    """Check the credential as the API would; on success, open a session."""
    console = get_console(request)
    target = _safe_next(next)
    if not console.codec.csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_page(request, error="The login form expired: please try again.",
                           status=403, target=target)  # fmt: skip
    credential = credential.strip()
    try:
        principal = await context_of(request).authenticator.authenticate(credential)
    except ProblemError as exc:
        if exc.status != 401:
            raise
        return _login_page(request, error=f"Not accepted: {exc.detail}", status=401,
                           target=target)  # fmt: skip
    request.state.tenant = principal.tenant
    response = RedirectResponse(target, status_code=303)
    session = console.codec.new(credential)
    _cookie(request, response, SESSION_COOKIE, console.codec.seal(session),
            int(console.codec.ttl_s))  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout", response_class=Response)
async def logout(request: Request, viewer: ViewerDep) -> Response:
    """End the session (the cookie is dropped)."""
    await require_csrf(request, viewer)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("/static/{name}", response_class=Response)
async def static(name: str) -> Response:
    """One of the console's own files (htmx, the style sheet, the script)."""
    path = STATIC_DIR / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return html("error.html", {"status": 404, "message": "no such file", "viewer": None},
                    status=404)  # fmt: skip
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=31536000, immutable"}
    return FileResponse(path, media_type=kind, headers=headers)
