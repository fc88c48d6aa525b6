"""Jinja2 rendering of the console's pages and fragments, with their security headers.

Templates autoescape everything. The pages load only the console's own static files (no
inline script or style), so the Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "html", "static_url"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_PREVIEW_CHARS = 20_000


@cache
def _static_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content (cached for good by browsers)."""
    return f"/ui/static/{name}?v={_static_version(name)}"


def _wf_url(workflow_id: str) -> str:
    return "/ui/workflows/" + quote(workflow_id, safe="")


def _pretty(value: Any, limit: int = _PREVIEW_CHARS) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more chars)"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _summary(payload: Any) -> str:
    """One line for an event's payload: its first few fields."""
    if not isinstance(payload, dict) or not payload:
        return "{}"
    parts = []
    for key, value in list(payload.items())[:3]:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(f"{key}={text[:40]}")
    return ", ".join(parts) + (" …" if len(payload) > 3 else "")


def _query(params: dict[str, Any]) -> str:
    flat: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item not in (None, ""):
                flat.append((key, str(item)))
    return urlencode(flat)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        wf_url=_wf_url, pretty=_pretty, when=_when, summary=_summary, query=_query,
        urlq=lambda v: quote(str(v), safe=""),
        query_with_cursor=lambda f, c: _query({**f, "cursor": c}),
        query_without_cursor=lambda f: _query({**f, "cursor": ""}),
    )  # fmt: skip
    env.globals.update(static_url=static_url, duration=_duration,
                       nonce=lambda: secrets.token_hex(16))  # fmt: skip
    return env


def html(
    template: str, context: dict[str, Any], *, status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    """``template`` rendered with ``context``, with the console's security headers."""
    body = _environment().get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
