"""Fixtures of the gateway integration tests: real Kafka and PostgreSQL, nothing faked.

Per module: a private database (migrated), private topics (``t-<uuid8>.``), a real
projector in a thread folding what the tests publish, API keys of two tenants. Per test:
the app (``create_app``) behind an in-process httpx client. ``events`` publishes
orchestrator-style events; ``command_log`` reads back what the gateway put on
``wf.commands`` / ``wf.definitions``.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from sqlalchemy import Engine

from foldflow.admin import ensure_topics
from foldflow.gateway.app import create_app
from foldflow.gateway.keys import SCOPES, create_api_key
from foldflow.producers import Publisher
from foldflow.projections.db import make_engine, upgrade
from foldflow.projections.projector import Projector
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, Topology, topic_specs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_support import (
    JWT_SECRET,
    EventWriter,
    Keys,
    TopicLog,
    scratch_database,
)


@pytest.fixture(scope="module")
def gw_database(database_url: str) -> Iterator[str]:
    """A migrated database of this module alone."""
    with scratch_database(database_url) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def gw_settings(stack: Settings, gw_database: str, admin: AdminClient) -> Iterator[Settings]:
    """Settings with private topics (created, deleted after) and the module's database."""
    settings = stack.model_copy(update={
        "topic_prefix": f"t-{uuid.uuid4().hex[:8]}.",
        "database_url": gw_database,
        "partitions": 3,
        "gateway_rate_limit": "100000/second",
        "gateway_auth_failure_limit": "100000/second",  # tests of the limits set their own
        "gateway_auth_failure_global_limit": "100000/second",
        "gateway_max_wait_s": 20.0,
        "jwt_secret": SecretStr(JWT_SECRET),
        "jwt_algorithms": ("HS256",),
        "jwt_audience": "foldflow",
        "jwt_leeway_s": 0,  # tests of expiry wait for it; no clock skew on one machine
        "api_keys": (),
    })  # fmt: skip
    ensure_topics(settings, task_types=BUILTIN_TASK_TYPES)
    yield settings
    names = [s.name for s in topic_specs(settings, task_types=BUILTIN_TASK_TYPES)]
    admin.delete_topics(names, operation_timeout=30)


@pytest.fixture(scope="module")
def gw_engine(gw_settings: Settings) -> Iterator[Engine]:
    """An engine on the module's database."""
    engine = make_engine(gw_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def gw_publisher(gw_settings: Settings) -> Iterator[Publisher]:
    """The publisher the apps of this module share (and tests use for events)."""
    with Publisher(gw_settings, source="gateway-tests") as publisher:
        yield publisher


@pytest.fixture(scope="module")
def projector(gw_settings: Settings, gw_engine: Engine, gw_publisher: Publisher) -> Iterator[None]:
    """A real projector folding the module's topics into its database, in a thread."""

    def dlq(msg: Message, error: BaseException) -> None:
        gw_publisher.send_to_dlq(
            msg.topic() or "",
            msg.key(),
            msg.value(),
            msg.headers(),
            error,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
        )

    running = Projector(gw_settings, gw_engine, dlq)
    thread = threading.Thread(target=running.run, name="projector", daemon=True)
    thread.start()
    yield
    running.stop()
    thread.join(30)


@pytest.fixture(scope="module")
def keys(gw_engine: Engine) -> Keys:
    """Keys stored in the module's ``api_keys`` table."""
    return Keys(
        acme=create_api_key(gw_engine, "acme", SCOPES, "acme all"),
        acme_read=create_api_key(gw_engine, "acme", ["workflows:read"], "acme read"),
        acme_write=create_api_key(gw_engine, "acme", ["workflows:write"], "acme write"),
        acme_definitions=create_api_key(gw_engine, "acme", ["definitions:write"], "acme defs"),
        globex=create_api_key(gw_engine, "globex", SCOPES, "globex all"),
    )


@pytest.fixture
async def client(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on a fresh app (real publisher and engine) in this process."""
    app = create_app(gw_settings, publisher=gw_publisher, engine=gw_engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture(scope="module")
def events(gw_settings: Settings, gw_publisher: Publisher) -> EventWriter:
    """Writes events to the module's ``wf.events``."""
    return EventWriter(gw_publisher, Topology.of(gw_settings).events)


@pytest.fixture(scope="module")
def command_log(gw_settings: Settings) -> Iterator[TopicLog]:
    """The module's ``wf.commands`` as the orchestrator would read it."""
    log = TopicLog(gw_settings, Topology.of(gw_settings).commands)
    yield log
    log.close()


@pytest.fixture(scope="module")
def definition_log(gw_settings: Settings) -> Iterator[TopicLog]:
    """The module's ``wf.definitions``."""
    log = TopicLog(gw_settings, Topology.of(gw_settings).definitions)
    yield log
    log.close()
