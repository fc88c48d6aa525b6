"""JSON bodies hold only values every downstream can encode and store (docs/limits.md).

FastAPI parses bodies with Python's ``json``, which accepts ``NaN``, ``±Infinity``,
``\\u0000``, lone surrogates, 4,000-digit integers and any nesting. This ASGI middleware
checks every JSON request body with :func:`foldflow.jsonsafe.loads` before any route
runs, and refuses such a body with one 422 problem listing every offending path
(``body.input.x``). Malformed JSON is left to FastAPI's own 422. A large body is checked
in a worker thread, so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import json

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foldflow import jsonsafe
from foldflow.gateway.errors import FieldProblem, problem_response

__all__ = ["JsonSafetyMiddleware", "body_location"]

#: Bodies larger than this are checked in a worker thread (a 1 MiB body takes ~0.1 s).
_OFFLOAD_BYTES = 16 * 1024


def body_location(path: str) -> str:
    """The problem location of a path inside the body: ``body``, ``body.a``, ``body[0]``."""
    if not path:
        return "body"
    return "body" + path if path.startswith("[") else "body." + path


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.decode("latin-1").split(";")[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


def _check(body: bytes) -> list[FieldProblem]:
    try:
        jsonsafe.loads(body)
    except json.JSONDecodeError:
        return []  # FastAPI answers malformed JSON itself
    except jsonsafe.UnsafeJson as exc:
        return [
            FieldProblem(location=body_location(p.path), message=p.message, type="unsafe_json")
            for p in exc.problems
        ]
    return []


class JsonSafetyMiddleware:
    """Refuse JSON bodies holding values no downstream can store (422 problem+json)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the body limit middleware outside this one has bounded the body
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            if len(body) > _OFFLOAD_BYTES:
                errors = await anyio.to_thread.run_sync(_check, body)
            else:
                errors = _check(body)
            if errors:
                response = problem_response(
                    422,
                    f"the body holds {len(errors)} value(s) that cannot be stored "
                    "(see docs/limits.md)",
                    kind="invalid-request",
                    instance=scope["path"],
                    errors=errors,
                )
                await response(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
