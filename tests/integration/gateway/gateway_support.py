"""Helpers of the gateway integration tests (imported by conftest and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError

from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.codec import decode
from foldflow.schemas.messages import (
    Envelope,
    Payload,
    WorkflowStarted,
    dump_json,
    event_id_for,
    workflow_key,
)
from foldflow.settings import Settings

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
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        for attempt in range(10):  # another suite's chaos test may be restarting PostgreSQL
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except OperationalError:
                if attempt == 9:
                    raise
                time.sleep(1)
        admin.dispose()


@dataclass(frozen=True)
class Keys:
    """API keys of the module: tenant ``acme`` with each scope set, tenant ``globex``."""

    acme: str
    acme_read: str
    acme_write: str
    acme_definitions: str
    globex: str


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a key or token."""
    return {"Authorization": f"Bearer {key}"}


def make_jwt(tenant: str, scopes: str | list[str], **claims: Any) -> str:
    """An HS256 token the module's settings accept (unless ``claims`` spoil it)."""
    now = int(time.time())
    body: dict[str, Any] = {"tenant": tenant, "aud": "foldflow", "iat": now, "exp": now + 300,
                            "sub": "tester"}  # fmt: skip
    body["scope" if isinstance(scopes, str) else "scopes"] = scopes
    body.update(claims)
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


@dataclass
class EventWriter:
    """Publishes a workflow's events as the orchestrator would (sequences 1, 2, ...).

    ``workflow_id`` is the tenant's own id: the events are keyed by its workflow key.
    """

    publisher: Publisher
    topic: str
    sequences: dict[str, int] = field(default_factory=dict)

    def emit(self, workflow_id: str, payload: Payload, *, tenant: str) -> Envelope:
        """Publish the workflow's next event and wait for the ack."""
        key = workflow_key(tenant, workflow_id)
        sequence = self.sequences.get(key, 0) + 1
        self.sequences[key] = sequence
        envelope = Envelope(
            event_id=event_id_for(key, sequence), timestamp=int(time.time() * 1000),
            source="orchestrator", correlation_id=key, workflow_id=key,
            payload=payload, sequence=sequence, tenant=tenant,
        )  # fmt: skip
        self.publisher.publish(self.topic, envelope)
        return envelope

    def start(
        self,
        workflow_id: str,
        *,
        tenant: str,
        definition: str = "order",
        version: int = 1,
        parent: tuple[str, str] | None = None,
    ) -> Envelope:
        """``workflow.started.v1`` for a new workflow (``parent``: its id and step)."""
        started = WorkflowStarted(
            definition_name=definition, definition_version=version,
            definition_json=dump_json({**DEFINITION, "name": definition, "version": version}),
            input_json=dump_json({"amount": 5}), tenant=tenant,
            parent_workflow_id=workflow_key(tenant, parent[0]) if parent else None,
            parent_step_id=parent[1] if parent else None,
        )  # fmt: skip
        return self.emit(workflow_id, started, tenant=tenant)


class TopicLog:
    """Everything on one topic since offset 0, decoded, read on demand (bounded waits)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(kafka_config(settings, {
            "group.id": f"gateway-tests-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }))  # fmt: skip
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


@contextlib.contextmanager
def statements(engine: Engine, *, on: str = "") -> Iterator[list[str]]:
    """The SQL statements the engine runs meanwhile (those naming ``on``), but the
    projector's (its thread)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if on in statement and threading.current_thread().name != "projector":
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def key_lookups(engine: Engine) -> contextlib.AbstractContextManager[list[str]]:
    """The statements on ``api_keys`` the engine runs meanwhile (not the projector's)."""
    return statements(engine, on="api_keys")
