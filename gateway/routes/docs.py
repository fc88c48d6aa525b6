"""``/docs``: Swagger UI over ``/openapi.json``, with a policy that allows only what it needs.

FastAPI's page loads Swagger UI from a CDN and starts it with one inline script; the
page's ``Content-Security-Policy`` allows that CDN and that script by its hash, nothing
else (see :mod:`foldflow.gateway.headers`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from foldflow.gateway.headers import page_csp

__all__ = ["SWAGGER_CDN", "router"]

router = APIRouter(include_in_schema=False)
#: Where FastAPI's Swagger UI page loads its script and stylesheet from.
SWAGGER_CDN = "https://cdn.jsdelivr.net"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API documentation."""
    root = request.scope.get("root_path", "").rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
    )
    page.headers["Content-Security-Policy"] = page_csp(bytes(page.body), cdn=SWAGGER_CDN)
    return page
