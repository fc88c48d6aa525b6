"""Workflow ids in URL paths: a child's id holds ``/`` (``<parent>/<step>``).

The routes under ``/v1/workflows/`` take the id as a path (``{workflow_id:path}``), so
``/v1/workflows/order-1/charge`` is the child ``order-1/charge`` and
``/v1/workflows/order-1/charge/events`` its history. A ``/`` of an id may also be sent
encoded (``%2F``), which is exact: ``/v1/workflows/order-1%2Fevents`` is the child of
step ``events``, where ``/v1/workflows/order-1/events`` is the history of ``order-1``.
For that, :class:`RawWorkflowPathMiddleware` routes these paths on their raw (still
percent-encoded) form, and :func:`workflow_id_param` decodes and checks the id once.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Path
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from foldflow.gateway.schemas import WORKFLOW_PATH_PATTERN

__all__ = ["RawWorkflowPathMiddleware", "WorkflowIdPath", "workflow_id_param"]

PREFIX = "/v1/workflows/"
_ID = re.compile(WORKFLOW_PATH_PATTERN)
_MAX_LENGTH = 4000


class RawWorkflowPathMiddleware:
    """Routes ``/v1/workflows/...`` on the raw path, keeping an encoded ``/`` in its id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            path: str = scope["path"]
            if raw and path.startswith(PREFIX):
                # Some servers (httpx's ASGI transport) leave the query on the raw path.
                text = raw.partition(b"?")[0].decode("latin-1")
                if text != path and unquote(text) == path:  # the same path, still encoded
                    scope["path"] = text
        await self.app(scope, receive, send)


async def workflow_id_param(
    workflow_id: Annotated[
        str,
        Path(
            description="the workflow id; a child's is `<parent id>/<step id>` (send its "
            "`/` as is, or as `%2F`)",
            json_schema_extra={"pattern": WORKFLOW_PATH_PATTERN, "maxLength": _MAX_LENGTH},
        ),
    ],
) -> str:
    """The workflow id of the path, decoded once and checked (422 problem if malformed;
    ``async``: FastAPI would call a plain ``def`` dependency in a worker thread)."""
    try:
        decoded = unquote(workflow_id, errors="strict")
    except UnicodeDecodeError:
        decoded = ""
    if len(decoded) > _MAX_LENGTH or _ID.match(decoded) is None:
        raise RequestValidationError([{
            "type": "string_pattern_mismatch",
            "loc": ("path", "workflow_id"),
            "msg": f"not a workflow id (pattern {WORKFLOW_PATH_PATTERN})",
            "input": workflow_id,
        }])  # fmt: skip
    return decoded


WorkflowIdPath = Annotated[str, Depends(workflow_id_param)]
