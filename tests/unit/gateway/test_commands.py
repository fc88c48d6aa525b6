"""CommandSender: a 503 naming Kafka when the ack fails or takes too long (fake publisher:
the real one is exercised by the integration tests)."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Message

from foldflow.gateway.commands import CommandSender, envelope_for
from foldflow.gateway.errors import DependencyUnavailable
from foldflow.producers import PublishError
from foldflow.schemas.messages import CancelWorkflow, Envelope


class SlowPublisher:
    async def publish_async(
        self, topic: str, envelope: Envelope, *, key: str | bytes | None = None
    ) -> Message:
        await asyncio.sleep(10)
        raise AssertionError("not reached")


class RefusingPublisher:
    async def publish_async(
        self, topic: str, envelope: Envelope, *, key: str | bytes | None = None
    ) -> Message:
        raise PublishError("broker said no", topic=topic, key=None)


def _envelope() -> Envelope:
    return envelope_for("wf-1", CancelWorkflow(), tenant="acme", correlation_id="req-1")


@pytest.mark.parametrize("publisher", [SlowPublisher(), RefusingPublisher()])
async def test_an_unacked_command_is_a_503_naming_kafka(publisher: object) -> None:
    sender = CommandSender(publisher, timeout_s=0.05)  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable) as caught:
        await sender.send("wf.commands", _envelope())
    assert caught.value.status == 503 and caught.value.dependency == "kafka"
    assert caught.value.headers["Retry-After"]


def test_a_command_envelope_carries_tenant_and_correlation() -> None:
    envelope = _envelope()
    assert envelope.tenant == "acme" and envelope.correlation_id == "req-1"
    assert envelope.source == "gateway" and envelope.event_type == "workflow.cancel.v1"
    assert envelope.sequence is None
