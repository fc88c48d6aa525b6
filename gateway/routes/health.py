"""Probes and metrics: ``/healthz`` (the process answers), ``/readyz`` (Kafka and
PostgreSQL answer; each reported), ``/metrics`` (Prometheus exposition)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from foldflow.gateway.deps import Ctx
from foldflow.gateway.errors import PROBLEM_JSON, Problem
from foldflow.observability.metrics import render_metrics

__all__ = ["CheckPublic", "Health", "Readiness", "ReadinessProblem", "router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class CheckPublic(BaseModel):
    """One dependency's readiness."""

    ok: bool
    detail: str


class Readiness(BaseModel):
    """Every dependency answers."""

    status: Literal["ready"] = "ready"
    checks: dict[str, CheckPublic]


class ReadinessProblem(Problem):
    """A dependency does not answer: the problem, plus every check."""

    checks: dict[str, CheckPublic]


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": ReadinessProblem, "description": "a dependency is down"}},
)
async def readyz(ctx: Ctx, request: Request) -> Readiness | JSONResponse:
    """200 when Kafka (metadata of the commands topic) and PostgreSQL (``SELECT 1``) answer."""
    checks = {
        name: CheckPublic(ok=c.ok, detail=c.detail)
        for name, c in (await ctx.readiness.check()).items()
    }
    failing = [name for name, c in checks.items() if not c.ok]
    if not failing:
        return Readiness(checks=checks)
    problem = ReadinessProblem(
        type="urn:foldflow:problem:dependency-unavailable",
        title="Service Unavailable",
        status=503,
        detail="not ready: " + "; ".join(f"{n}: {checks[n].detail}" for n in failing),
        instance=request.url.path,
        dependency=",".join(failing),
        checks=checks,
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=503,
        media_type=PROBLEM_JSON,
        headers={"Retry-After": "5"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    """Every ``foldflow_*`` metric of this process, in the Prometheus text format."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
