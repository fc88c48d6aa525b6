"""The gateway's composition root: :func:`create_app` wires settings, Kafka and PostgreSQL.

Tests pass their own ``publisher`` or ``engine`` (real ones, on private topics and a
private database); ``foldflow run gateway`` passes none and the app owns, and closes,
what it creates. Middleware, outermost first: security headers, observability (request
id, span, RED metrics, access log), rate limit, body size limit, JSON safety (values no
downstream can store are refused with a 422 before any route runs), raw workflow paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine
from starlette.middleware import Middleware

from foldflow.gateway import errors
from foldflow.gateway.auth import Authenticator
from foldflow.gateway.bodylimit import BodyLimitMiddleware
from foldflow.gateway.commands import CommandSender, PublishesAsync
from foldflow.gateway.context import GatewayContext
from foldflow.gateway.db import make_engine
from foldflow.gateway.headers import SecurityHeadersMiddleware
from foldflow.gateway.jsonbody import JsonSafetyMiddleware
from foldflow.gateway.observe import ObserveMiddleware
from foldflow.gateway.openapi import build_openapi, operation_id
from foldflow.gateway.paths import RawWorkflowPathMiddleware
from foldflow.gateway.ratelimit import RateLimitMiddleware
from foldflow.gateway.readiness import Readiness
from foldflow.gateway.reads import Reads
from foldflow.gateway.routes import commands, definitions, docs, health, workflows
from foldflow.gateway.ui import install as install_console
from foldflow.gateway.ui.render import CONTENT_SECURITY_POLICY as CONSOLE_CSP
from foldflow.gateway.versions import DefinitionVersions
from foldflow.kafka import kafka_config
from foldflow.observability.tracing import configure_tracing
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["NO_FASTAPI_TELEMETRY", "check_settings", "create_app"]

#: FastAPI's built-in OpenTelemetry instrumentation, every part of it off.
NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False, "metrics": False, "logs": False, "operation_spans": False,
}  # fmt: skip

DESCRIPTION = """\
Start and steer workflows (commands on Kafka, answered once the broker acked them) and
read their state and history (PostgreSQL projections). Authenticate with an API key
(`Authorization: Bearer KEY` or `X-API-Key: KEY`) or a JWT; every error is RFC 9457
`application/problem+json`.
"""


def check_settings(settings: Settings) -> None:
    """Raise ``ValueError`` for settings the gateway cannot run with (JWT key, audience),
    before any process or connection is started."""
    Authenticator(settings, engine=None)


def create_app(
    settings: Settings,
    *,
    publisher: PublishesAsync | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the FastAPI app; owned resources (those not passed in) close at shutdown."""
    configure_tracing(settings, service="gateway")
    owned: list[Any] = []
    if publisher is None:
        from foldflow.producers import Publisher

        publisher = Publisher(settings, source="gateway")
        owned.append(publisher)
    if engine is None:
        engine = make_engine(settings, timeout_s=settings.gateway_db_timeout_s)
        owned.append(engine)
    topology = Topology.of(settings)
    reads = Reads(engine, timeout_s=settings.gateway_db_timeout_s)
    context = GatewayContext(
        settings=settings,
        topology=topology,
        commands=CommandSender(publisher, timeout_s=settings.gateway_kafka_timeout_s),
        engine=engine,
        authenticator=Authenticator(settings, engine=engine),
        readiness=Readiness(
            kafka_config=kafka_config(settings),
            commands_topic=topology.commands,
            engine=engine,
            timeout_s=min(settings.gateway_db_timeout_s, settings.gateway_kafka_timeout_s),
        ),
        reads=reads,
        versions=DefinitionVersions(reads.definition_version,
                                    ttl_s=settings.gateway_definition_cache_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for resource in owned:
            if isinstance(resource, Engine):
                resource.dispose()
            else:
                resource.close()

    # The Content-Security-Policy of each path prefix that serves pages (/docs sets its own).
    csp_by_prefix: dict[str, str] = {"/ui": CONSOLE_CSP}
    app = FastAPI(
        title="Foldflow",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        middleware=[
            Middleware(
                SecurityHeadersMiddleware,
                csp_by_prefix=csp_by_prefix,
                hsts_max_age_s=settings.gateway_hsts_max_age_s,
            ),
            Middleware(ObserveMiddleware),
            Middleware(RateLimitMiddleware, rate=settings.gateway_rate_limit),
            Middleware(BodyLimitMiddleware, max_bytes=settings.gateway_max_body_bytes),
            Middleware(JsonSafetyMiddleware),
            Middleware(RawWorkflowPathMiddleware),
        ],
        # ObserveMiddleware makes the one server span and the RED metrics; FastAPI's own
        # telemetry would add a second server span and a span per dependency to every request.
        telemetry=NO_FASTAPI_TELEMETRY,
        docs_url=None,  # foldflow.gateway.routes.docs serves /docs with its own policy
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.gateway = context
    errors.install(app)
    app.include_router(docs.router)
    app.include_router(health.router)
    app.include_router(definitions.router)
    app.include_router(workflows.router)
    app.include_router(commands.router)
    install_console(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
