"""``foldflow run gateway`` (the REST API in the foreground) and ``foldflow gateway openapi``.

The composition root of the gateway process: settings, JSON logs, tracing, then
:func:`foldflow.gateway.app.create_app` served by uvicorn on ``gateway_host:gateway_port``, in
one process or (``--workers N``) in N worker processes under uvicorn's supervisor, each
building its own app (its own Kafka producer, database pool, rate limits and caches).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from foldflow.settings import get_settings

__all__ = ["app", "run_gateway", "worker_app"]

app = typer.Typer(help="The REST gateway.", no_args_is_help=True)


def run_gateway(
    host: str | None = typer.Option(None, help="Bind address (default: settings.gateway_host)."),
    port: int | None = typer.Option(None, help="Port (default: settings.gateway_port)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64,
        help="Gateway processes sharing the port (default: settings.gateway_workers). "
             "Rate limits and caches are per process (docs/architecture.md)."),
) -> None:
    """Serve the REST API until SIGTERM/SIGINT."""
    import uvicorn

    from foldflow.gateway.app import check_settings
    from foldflow.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, service="gateway")
    try:
        check_settings(settings)
    except ValueError as exc:  # a setting the gateway cannot run with (JWT key, audience)
        typer.echo(f"gateway: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    count = workers if workers is not None else settings.gateway_workers
    with _shared_worker_state(count):
        uvicorn.run(
            f"{__name__}:{worker_app.__name__}",
            factory=True,
            workers=count,
            host=host or settings.gateway_host,
            port=port if port is not None else settings.gateway_port,
            log_config=None,  # our JSON logging; the gateway writes its own access log
            access_log=False,
            timeout_graceful_shutdown=10,
        )


def worker_app() -> Any:
    """The app one gateway process serves (uvicorn's factory, in each worker)."""
    from foldflow.gateway.app import create_app
    from foldflow.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, service="gateway")
    return create_app(settings)


@contextlib.contextmanager
def _shared_worker_state(workers: int) -> Iterator[None]:
    """What several worker processes must share, set in the environment they inherit.

    ``/metrics`` must count every worker's requests whichever worker answers the scrape
    (prometheus-client's multiprocess mode, in a directory of this run), and a console
    session opened on one worker must open on the others (one session secret).
    """
    if workers <= 1:
        yield
        return
    added: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="foldflow-gateway-metrics-") as metrics_dir:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            added["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        if get_settings().ui_session_secret is None:
            added["FOLDFLOW_UI_SESSION_SECRET"] = secrets.token_urlsafe(32)
        os.environ.update(added)
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


@app.command("openapi")
def openapi(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Print the gateway's OpenAPI document (what gateway/openapi.json holds)."""
    from foldflow.gateway.app import create_app
    from foldflow.gateway.openapi import document_json
    from foldflow.producers import Publisher

    settings = get_settings()
    with Publisher(settings, source="gateway-openapi") as publisher:  # never used to publish
        text = document_json(create_app(settings, publisher=publisher))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
