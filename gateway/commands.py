"""Commands onto Kafka: envelopes the gateway builds and publishes, acked before answering.

A 202 means the broker acked the command. A publish that fails or outlasts
``gateway_kafka_timeout_s`` is a ``503 kafka unavailable``: the client retries, and the
deterministic ids (Idempotency-Key) make the retry harmless.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Protocol

from confluent_kafka import KafkaException, Message

from foldflow.gateway.errors import DependencyUnavailable
from foldflow.producers import PublishError
from foldflow.schemas.messages import Envelope, Payload

__all__ = [
    "CommandSender",
    "PublishesAsync",
    "command_id_for_key",
    "envelope_for",
    "workflow_id_for_key",
]

SOURCE = "gateway"
_IDEMPOTENCY_NAMESPACE = uuid.UUID("0b6f7c1e-3f7e-4d0f-9a6c-1f0f6a7d2c55")


class PublishesAsync(Protocol):
    """What the gateway needs of :class:`producers.Publisher`."""

    async def publish_async(
        self, topic: str, envelope: Envelope, *, key: str | bytes | None = None
    ) -> Message: ...


def workflow_id_for_key(tenant: str, idempotency_key: str) -> str:
    """The workflow id an ``Idempotency-Key`` stands for: the same for the same tenant+key."""
    # Length-prefixed, so no (tenant, key) pair can collide with another one.
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{len(tenant)}:{tenant}:{idempotency_key}"))


def command_id_for_key(tenant: str, idempotency_key: str, workflow_id: str, event_type: str) -> str:
    """The id of a workflow command sent with an ``Idempotency-Key``: a retry repeats it."""
    parts = (tenant, idempotency_key, workflow_id, event_type)
    name = "".join(f"{len(part)}:{part};" for part in parts)  # unambiguous
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name))


def envelope_for(
    workflow_id: str,
    payload: Payload,
    *,
    tenant: str,
    correlation_id: str,
    event_id: str | None = None,
) -> Envelope:
    """A command envelope from the gateway (a random id unless one is given)."""
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        timestamp=int(time.time() * 1000),
        source=SOURCE,
        correlation_id=correlation_id,
        workflow_id=workflow_id,
        payload=payload,
        tenant=tenant,
    )


class CommandSender:
    """Publishes one envelope and waits (bounded) for the broker's ack."""

    def __init__(self, publisher: PublishesAsync, *, timeout_s: float) -> None:
        self._publisher = publisher
        self._timeout_s = timeout_s

    async def send(self, topic: str, envelope: Envelope, *, key: str | None = None) -> None:
        """Publish ``envelope`` to ``topic``; raise a 503 problem unless it is acked in time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._publisher.publish_async(topic, envelope, key=key)
        except TimeoutError as exc:
            raise DependencyUnavailable(
                "kafka", f"the broker did not ack within {self._timeout_s:g}s"
            ) from exc
        except (PublishError, KafkaException) as exc:
            raise DependencyUnavailable("kafka", f"the command was not acked: {exc}") from exc
