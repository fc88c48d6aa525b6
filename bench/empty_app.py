"""The ceiling of the HTTP stack: a FastAPI app whose start route does nothing.

``POST /v1/workflows`` answers 202 with an id at once: no middleware, no auth, no Kafka,
no database. Served by uvicorn exactly as ``foldflow run gateway`` serves the gateway
(same workers, loop and HTTP parser picked the same way, no access log), it is what the
gateway's starts/s are divided by: the share of the HTTP stack's own ceiling the start
path keeps. ``python -m foldflow.bench.empty_app --port P --workers N`` serves it.
"""

from __future__ import annotations

import uuid
from typing import Any

import typer
from fastapi import FastAPI

__all__ = ["build", "main"]


def build() -> FastAPI:
    """The empty app (uvicorn's factory)."""
    from foldflow.gateway.app import NO_FASTAPI_TELEMETRY

    app = FastAPI(telemetry=NO_FASTAPI_TELEMETRY, openapi_url=None, docs_url=None,
                  redoc_url=None)

    @app.post("/v1/workflows", status_code=202)
    async def start(body: dict[str, Any]) -> dict[str, str]:
        return {"id": str(uuid.uuid4()), "status": "accepted"}

    return app


def serve(
    port: int = typer.Option(..., help="Port on 127.0.0.1."),
    workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes."),
) -> None:
    """Serve the empty app until SIGTERM/SIGINT."""
    import uvicorn

    uvicorn.run(f"{__name__}:{build.__name__}", factory=True, workers=workers,
                host="127.0.0.1", port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


def main() -> None:
    """``python -m foldflow.bench.empty_app``."""
    typer.run(serve)


if __name__ == "__main__":
    main()
