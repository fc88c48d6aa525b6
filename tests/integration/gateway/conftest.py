"""Fixtures of the gateway integration tests: real Kafka and PostgreSQL, nothing faked.

Per module: a private database (migrated), private topics (``t-<uuid8>.``), a real
projector in a thread folding what the tests publish, API keys of two tenants. Per test:
the app (``create_app``) behind an in-process httpx client. ``events`` publishes
orchestrator-style events; ``command_log`` reads back what the gateway put on
``wf.commands`` / ``wf.definitions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, make_url, text

from foldflow.admin import ensure_topics
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, Topology, topic_specs
from gateway.app import create_app
from gateway.keys import SCOPES, create_api_key
from producers import Publisher
from projections.db import make_engine, upgrade
from projections.projector import Projector
from schemas.codec import decode
from schemas.messages import Envelope, Payload, WorkflowStarted, dump_json, event_id_for

JWT_SECRET = "gateway-tests-hmac-secret-of-at-least-32-bytes"
DEFINITION = {
    "name": "order",
    "version": 1,
    "steps": [{"id": "charge", "task": "builtin.echo", "input": {"amount": "${input.amount}"}}],
}


@contextlib.contextmanager
def scratch_database(base_url: str) -> Iterator[str]:
    """``CREATE DATABASE foldflow_t_<uuid8>`` (migrated by the caller); dropped after."""
    name = f"foldflow_t_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
        "gateway_max_wait_s": 20.0,
        "jwt_secret": SecretStr(JWT_SECRET),
        "jwt_algorithms": ("HS256",),
        "jwt_audience": "foldflow",
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
        gw_publisher.send_to_dlq(msg.topic() or "", msg.key(), msg.value(), msg.headers(), error,
                                 partition=msg.partition() or 0, offset=msg.offset() or 0)

    running = Projector(gw_settings, gw_engine, dlq)
    thread = threading.Thread(target=running.run, name="projector", daemon=True)
    thread.start()
    yield
    running.stop()
    thread.join(30)


@dataclass(frozen=True)
class Keys:
    """API keys of the module: tenant ``acme`` with each scope set, tenant ``globex``."""

    acme: str
    acme_read: str
    acme_write: str
    acme_definitions: str
    globex: str


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


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a key or token."""
    return {"Authorization": f"Bearer {key}"}


def make_jwt(tenant: str, scopes: str | list[str], **claims: Any) -> str:
    """An HS256 token the module's settings accept (unless ``claims`` spoil it)."""
    body: dict[str, Any] = {"tenant": tenant, "aud": "foldflow", "exp": int(time.time()) + 300,
                            "sub": "tester"}  # fmt: skip
    body["scope" if isinstance(scopes, str) else "scopes"] = scopes
    body.update(claims)
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


@pytest.fixture
async def client(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on a fresh app (real publisher and engine) in this process."""
    app = create_app(gw_settings, publisher=gw_publisher, engine=gw_engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@dataclass
class EventWriter:
    """Publishes a workflow's events as the orchestrator would (sequences 1, 2, ...)."""

    publisher: Publisher
    topic: str
    sequences: dict[str, int] = field(default_factory=dict)

    def emit(self, workflow_id: str, payload: Payload, *, tenant: str) -> Envelope:
        """Publish the workflow's next event and wait for the ack."""
        sequence = self.sequences.get(workflow_id, 0) + 1
        self.sequences[workflow_id] = sequence
        envelope = Envelope(
            event_id=event_id_for(workflow_id, sequence), timestamp=int(time.time() * 1000),
            source="orchestrator", correlation_id=workflow_id, workflow_id=workflow_id,
            payload=payload, sequence=sequence, tenant=tenant,
        )  # fmt: skip
        self.publisher.publish(self.topic, envelope)
        return envelope

    def start(
        self, workflow_id: str, *, tenant: str, definition: str = "order", version: int = 1
    ) -> Envelope:
        """``workflow.started.v1`` for a new workflow."""
        started = WorkflowStarted(
            definition_name=definition, definition_version=version,
            definition_json=dump_json({**DEFINITION, "name": definition, "version": version}),
            input_json=dump_json({"amount": 5}), tenant=tenant,
        )  # fmt: skip
        return self.emit(workflow_id, started, tenant=tenant)


@pytest.fixture(scope="module")
def events(gw_settings: Settings, gw_publisher: Publisher) -> EventWriter:
    """Writes events to the module's ``wf.events``."""
    return EventWriter(gw_publisher, Topology.of(gw_settings).events)


class TopicLog:
    """Everything on one topic since offset 0, decoded, read on demand (bounded waits)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"gateway-tests-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        })  # fmt: skip
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.seen: list[tuple[Envelope, dict[str, bytes]]] = []

    def wait_for(
        self, match: Callable[[Envelope], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[tuple[Envelope, dict[str, bytes]]]:
        """At least ``count`` matching (envelope, headers) pairs; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [item for item in self.seen if match(item[0])]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(found)} of {count} messages after {timeout}s")
            msg = self.consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() is not None:
                headers = {k: v for k, v in (msg.headers() or []) if isinstance(v, bytes)}
                self.seen.append((decode(msg.value()), headers))

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()


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


def new_id(prefix: str = "wf") -> str:
    """A workflow id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(
    call: Callable[[], Awaitable[httpx.Response]],
    until: Callable[[httpx.Response], bool],
    *,
    timeout: float = 30.0,
) -> httpx.Response:
    """Repeat ``call`` (every 100 ms) until ``until(response)``; the last response after
    ``timeout`` (the projection is asynchronous: a caller that needs it waits for it)."""
    deadline = time.monotonic() + timeout
    response = await call()
    while not until(response) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        response = await call()
    return response
