"""RFC 9457 problem details for every error the gateway answers.

Every error leaves as ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and ``instance``; validation problems add ``errors`` (one entry per field,
with its location), a dependency outage adds ``dependency``. Routes raise
:class:`ProblemError` (or a subclass); FastAPI's own errors (validation, 404, 405) are
translated by the handlers :func:`install` registers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

__all__ = [
    "PROBLEM_JSON",
    "DependencyUnavailable",
    "FieldProblem",
    "Problem",
    "ProblemError",
    "install",
    "problem_response",
    "problems",
]

log = logging.getLogger("foldflow.gateway")

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:foldflow:problem:"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class FieldProblem(BaseModel):
    """One invalid field: where it is (``body.input``, ``query.limit``, ...) and what is wrong."""

    location: str = Field(examples=["body.definition"])
    message: str = Field(examples=["Field required"])
    type: str | None = Field(default=None, examples=["missing"])


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(default="about:blank", examples=["urn:foldflow:problem:invalid-request"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(ge=400, le=599, examples=[422])
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldProblem] | None = Field(
        default=None, description="every invalid field (validation problems only)"
    )
    dependency: str | None = Field(
        default=None, description="the unavailable dependency (503 only): kafka or postgresql"
    )


class ProblemError(Exception):
    """Raise to answer with a problem; ``kind`` becomes the ``type`` URI's last part."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        kind: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldProblem] | None = None,
        headers: Mapping[str, str] | None = None,
        dependency: str | None = None,
    ) -> None:
        super().__init__(detail or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.dependency = dependency


class DependencyUnavailable(ProblemError):
    """A dependency (``kafka`` or ``postgresql``) failed or timed out: 503."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(
            503,
            detail,
            kind="dependency-unavailable",
            title=f"{dependency} unavailable",
            dependency=dependency,
            headers={"Retry-After": "5"},
        )


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    kind: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    errors: Sequence[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
    dependency: str | None = None,
) -> JSONResponse:
    """A problem+json response (usable from middleware, where no handler runs)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    problem = Problem(
        type=_TYPE_BASE + kind if kind else "about:blank",
        title=title or phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors is not None else None,
        dependency=dependency,
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def _location(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[FieldProblem]:
    """FastAPI/pydantic error dicts as :class:`FieldProblem` entries."""
    out: list[FieldProblem] = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        ctx = error.get("ctx") or {}
        if error.get("type") == "json_invalid" and "error" in ctx:
            message = f"invalid JSON: {ctx['error']}"
        out.append(
            FieldProblem(
                location=_location(error.get("loc", ())), message=message, type=error.get("type")
            )
        )
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.detail,
        kind=exc.kind,
        title=exc.title,
        instance=request.url.path,
        errors=exc.errors,
        headers=exc.headers,
        dependency=exc.dependency,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc.errors())
    return problem_response(
        422,
        f"the request has {len(problems)} invalid field(s)",
        kind="invalid-request",
        instance=request.url.path,
        errors=problems,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == HTTPStatus(exc.status_code).phrase:
        detail = None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "an unexpected error occurred", instance=request.url.path)


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem answers for ``statuses``.

    :func:`foldflow.gateway.openapi.build_openapi` files them under ``application/problem+json``.
    """
    return {s: {"model": Problem, "description": HTTPStatus(s).phrase} for s in statuses}
