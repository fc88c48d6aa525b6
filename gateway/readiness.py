"""``/readyz`` checks: Kafka metadata (the commands topic exists) and PostgreSQL ``SELECT 1``.

Each check runs on a worker thread with a deadline, so a dead dependency makes the
probe answer 503 naming it, promptly, instead of hanging.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text

__all__ = ["Check", "Readiness"]


@dataclass(frozen=True)
class Check:
    """The outcome of one dependency check."""

    ok: bool
    detail: str


class Readiness:
    """Checks the gateway's two dependencies."""

    def __init__(
        self,
        *,
        kafka_config: Mapping[str, Any],
        commands_topic: str,
        engine: Engine,
        timeout_s: float,
    ) -> None:
        self._kafka_config = dict(kafka_config)  # from foldflow.kafka.kafka_config
        self._topic = commands_topic
        self._engine = engine
        self._timeout_s = timeout_s
        self._admin: AdminClient | None = None

    def _kafka(self) -> Check:
        if self._admin is None:
            self._admin = AdminClient(self._kafka_config)
        metadata = self._admin.list_topics(topic=self._topic, timeout=self._timeout_s)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            reason = topic.error.str() if topic is not None and topic.error else "missing"
            return Check(False, f"topic {self._topic} unavailable: {reason}")
        return Check(
            True,
            f"{len(metadata.brokers)} broker(s), {self._topic} has "
            f"{len(topic.partitions)} partition(s)",
        )

    def _postgresql(self) -> Check:
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Check(True, "SELECT 1 ok")

    async def _run(self, name: str, probe: functools.partial[Check]) -> tuple[str, Check]:
        try:
            with anyio.fail_after(self._timeout_s + 1):
                return name, await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
        except TimeoutError:
            return name, Check(False, f"no answer within {self._timeout_s:g}s")
        except Exception as exc:  # any failure of a probe means "not ready", with the reason
            return name, Check(False, f"{type(exc).__name__}: {exc}")

    async def check(self) -> dict[str, Check]:
        """Run both checks concurrently: ``{"kafka": Check, "postgresql": Check}``."""
        results = await asyncio.gather(
            self._run("kafka", functools.partial(self._kafka)),
            self._run("postgresql", functools.partial(self._postgresql)),
        )
        return dict(results)
