"""``foldflow.client.AsyncClient`` against the real gateway app (in process) on real Kafka
and PostgreSQL: what it sends lands on the topics, what it reads comes typed, the API's
problems come back as the client's exceptions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_support import DEFINITION, EventWriter, Keys, TopicLog
from sqlalchemy import Engine

from foldflow.client import AsyncClient, Conflict, Forbidden, Invalid, NotFound, WaitTimeout
from foldflow.gateway.app import create_app
from foldflow.gateway.commands import workflow_id_for_key
from foldflow.producers import Publisher
from foldflow.schemas.messages import workflow_key
from foldflow.settings import Settings

pytestmark = pytest.mark.usefixtures("projector")


@pytest.fixture
def app_transport(
    gw_settings: Settings, gw_publisher: Publisher, gw_engine: Engine
) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(gw_settings, publisher=gw_publisher,
                                              engine=gw_engine))  # fmt: skip


@pytest.fixture
async def acme(app_transport: httpx.ASGITransport, keys: Keys) -> AsyncIterator[AsyncClient]:
    async with AsyncClient("http://gateway", api_key=keys.acme,
                           transport=app_transport) as client:  # fmt: skip
        yield client


async def test_a_workflow_through_the_client(
    acme: AsyncClient, events: EventWriter, command_log: TopicLog
) -> None:
    name = f"client-{uuid.uuid4().hex[:8]}"
    registered = await acme.definitions.register({**DEFINITION, "name": name})
    assert (registered.name, registered.version) == (name, 1)
    for _ in range(100):  # the registration is projected a moment later
        try:
            await acme.definitions.get(name)
            break
        except NotFound:
            await asyncio.sleep(0.1)
    again = await acme.definitions.register({**DEFINITION, "name": name})  # same: a no-op
    assert again.version == 1
    with pytest.raises(Conflict):
        await acme.definitions.register({**DEFINITION, "name": name, "steps": [
            {"id": "other", "task": "builtin.echo"}]})  # fmt: skip

    started = await acme.start(name, {"amount": 3}, idempotency_key="client-test-1")
    assert started.id == workflow_id_for_key("acme", "client-test-1")
    sent = command_log.wait_for(lambda e: e.workflow_id == workflow_key("acme", started.id))
    assert sent[0][0].event_type == "workflow.start.v1"

    events.start(started.id, tenant="acme", definition=name)
    running = await acme.wait(started.id, until="running", timeout=30)
    assert running.definition == name and running.input == {"amount": 5}
    assert [e.event_type async for e in acme.events(started.id)] == ["workflow.started.v1"]
    assert started.id in [w.id async for w in acme.list(definition=name)]
    assert (await acme.definitions.get(name)).version == 1
    assert name in [d.name for d in await acme.definitions.list()]
    with pytest.raises(WaitTimeout) as late:
        await acme.wait(started.id, timeout=1)
    assert late.value.workflow is not None and late.value.workflow.status == "running"

    cancelled = await acme.cancel(started.id, reason="client")
    assert cancelled.command == "workflow.cancel.v1"
    command_log.wait_for(lambda e: e.workflow_id == workflow_key("acme", started.id)
                         and e.event_type == "workflow.cancel.v1")  # fmt: skip


async def test_problems_are_typed(
    acme: AsyncClient, app_transport: httpx.ASGITransport, keys: Keys
) -> None:
    with pytest.raises(NotFound):
        await acme.get(f"no-such-{uuid.uuid4().hex[:6]}")
    with pytest.raises(Invalid) as invalid:
        await acme.start(f"unknown-{uuid.uuid4().hex[:6]}")
    assert [e.location for e in invalid.value.errors] == ["body.definition"]
    with pytest.raises(Invalid) as bad:
        await acme.definitions.register({"name": "x", "steps": [{"id": "a", "after": ["b"]}]})
    assert bad.value.errors
    async with AsyncClient("http://gateway", api_key=keys.acme_read,
                           transport=app_transport) as reader:  # fmt: skip
        with pytest.raises(Forbidden):
            await reader.start("anything")
        assert (await reader.health()).status == "ok"
