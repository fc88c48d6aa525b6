"""The OpenAPI document: FastAPI's, with every error filed as ``application/problem+json``.

Routes declare their error statuses with :func:`foldflow.gateway.errors.problems`; here each
is moved from ``application/json`` to ``application/problem+json`` and FastAPI's default
``HTTPValidationError`` 422 is replaced by :class:`~foldflow.gateway.errors.Problem`.
:func:`operation_id` names each operation after its route function in camelCase
(``start_workflow`` → ``startWorkflow``), so generated clients read well.
:func:`document_json` is what ``foldflow gateway openapi`` prints and what
``gateway/openapi.json`` holds (a contract test compares the two).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from foldflow.gateway.errors import PROBLEM_JSON

__all__ = ["build_openapi", "document_json", "operation_id"]

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_UNUSED = ("HTTPValidationError", "ValidationError")


def operation_id(route: APIRoute) -> str:
    """The operationId of a route: its function's name in camelCase (``getWorkflow``)."""
    first, *rest = route.name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _fix_responses(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        content = response.get("content", {})
        schema = content.get("application/json", {}).get("schema", _PROBLEM_REF)
        if schema.get("$ref", "").endswith("/HTTPValidationError"):
            schema = _PROBLEM_REF
        response["content"] = {PROBLEM_JSON: {"schema": schema}}
        if status in ("429", "503"):
            response.setdefault("headers", {}).update(_RETRY_AFTER)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (cached on the app, as FastAPI does)."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            _fix_responses(operation.get("responses", {}))
    schemas = document.get("components", {}).get("schemas", {})
    for name in _UNUSED:
        schemas.pop(name, None)
    app.openapi_schema = document
    return document


def document_json(app: FastAPI) -> str:
    """The document as stable, human-diffable JSON (sorted keys, two-space indent)."""
    return json.dumps(build_openapi(app), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
