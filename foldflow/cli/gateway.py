"""``foldflow run gateway`` (the REST API in the foreground) and ``foldflow gateway openapi``.

The composition root of the gateway process: settings, JSON logs, tracing, then
:func:`gateway.app.create_app` served by uvicorn on ``gateway_host:gateway_port``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from foldflow.settings import get_settings

__all__ = ["app", "run_gateway"]

app = typer.Typer(help="The REST gateway.", no_args_is_help=True)


def run_gateway(
    host: str | None = typer.Option(None, help="Bind address (default: settings.gateway_host)."),
    port: int | None = typer.Option(None, help="Port (default: settings.gateway_port)."),
) -> None:
    """Serve the REST API until SIGTERM/SIGINT."""
    import uvicorn

    from foldflow.observability.logging import configure_logging
    from gateway.app import create_app

    settings = get_settings()
    configure_logging(settings, service="gateway")
    try:
        api = create_app(settings)
    except ValueError as exc:  # a setting the gateway cannot run with (JWT key, audience)
        typer.echo(f"gateway: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(
        api,
        host=host or settings.gateway_host,
        port=port if port is not None else settings.gateway_port,
        log_config=None,  # our JSON logging; the gateway writes its own access log
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command("openapi")
def openapi(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Print the gateway's OpenAPI document (what gateway/openapi.json holds)."""
    from gateway.app import create_app
    from gateway.openapi import document_json
    from producers import Publisher

    settings = get_settings()
    with Publisher(settings, source="gateway-openapi") as publisher:  # never used to publish
        text = document_json(create_app(settings, publisher=publisher))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
