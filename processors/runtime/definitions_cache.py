"""The orchestrator's in-memory view of ``wf.definitions`` (DESIGN §3, §6).

A consumer without a group reads the compacted topic from the beginning and keeps every
registered ``(tenant, name, version)``: each tenant has its own namespace, and "latest"
is the tenant's highest version. A record is read by its payload, not its key, so records
keyed ``name:version`` (before keys named the tenant) still load; one without a tenant
belongs to the default tenant. To close the register-then-start race, :meth:`resolve`
of a definition the cache lacks first waits (bounded) until the cache has read up to the
topic's end offsets as they are *now*; only then is the definition unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from foldflow.definitions import Definition
from foldflow.settings import Settings
from foldflow.topics import Topology
from schemas.codec import CodecError, decode
from schemas.messages import DEFAULT_TENANT, DefinitionRegistered, parse_definition_key

__all__ = ["DefinitionsCache"]

log = logging.getLogger(__name__)


class DefinitionsCache:
    """Every registered definition version, read from ``wf.definitions`` since offset 0."""

    def __init__(self, settings: Settings, *, catch_up_timeout: float = 10.0) -> None:
        self._settings = settings
        self._topic = Topology.of(settings).definitions
        self._catch_up_timeout = catch_up_timeout
        self._versions: dict[tuple[str, str], dict[int, Definition]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        """Start reading the topic from the beginning (returns at once)."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="foldflow-orchestrator-definitions",
        )
        await self._consumer.start()
        self._consumer.subscribe([self._topic])
        self._task = asyncio.create_task(self._run(), name="definitions-cache")

    async def stop(self) -> None:
        """Stop the reader."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def get(self, tenant: str, name: str, version: int | None) -> Definition | None:
        """``tenant``'s definition ``name`` at ``version`` (None: its latest), if already read."""
        versions = self._versions.get((tenant, name))
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    async def resolve(self, tenant: str, name: str, version: int | None) -> Definition | None:
        """Like :meth:`get`, but on a miss first catch up with the topic's current end."""
        found = self.get(tenant, name, version)
        if found is None and await self.catch_up(timeout=self._catch_up_timeout):
            found = self.get(tenant, name, version)
        return found

    async def catch_up(self, *, timeout: float) -> bool:
        """Wait until everything on the topic now has been read; False on timeout."""
        try:
            await asyncio.wait_for(self._wait_for_end(), timeout)
        except TimeoutError:
            log.warning("definitions cache did not catch up with %s in %.1fs", self._topic, timeout)
            return False
        return True

    async def _wait_for_end(self) -> None:
        consumer = self._require_consumer()
        while not consumer.assignment():  # the group-less assignment follows metadata
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        while True:
            positions = {tp: await self._position(tp) for tp in tps}
            if all(positions[tp] is not None and positions[tp] >= ends[tp] for tp in tps):
                return
            async with self._progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), 0.5)

    async def _position(self, tp: TopicPartition) -> int | None:
        consumer = self._require_consumer()
        try:
            return await consumer.position(tp)
        except (KafkaError, AssertionError, KeyError):
            return None  # not assigned (yet)

    async def _run(self) -> None:
        consumer = self._require_consumer()
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=1_000)
            except KafkaError as exc:
                log.warning("reading %s failed: %s; retrying", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            async with self._progress:
                self._progress.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # tombstone: the registration was withdrawn
            parsed = parse_definition_key(key.decode("utf-8", "replace")) if key else None
            if parsed is not None:
                tenant, name, version = parsed
                self._versions.get((tenant, name), {}).pop(version, None)
            return
        try:
            envelope = decode(value)
        except CodecError as exc:
            log.warning("skipping undecodable record on %s: %s", self._topic, exc)
            return
        payload = envelope.payload
        if not isinstance(payload, DefinitionRegistered):
            log.warning("skipping %s on %s", envelope.event_type, self._topic)
            return
        try:
            definition = Definition.from_json(payload.definition_json)
        except ValueError as exc:
            log.warning("skipping invalid definition %s:%s: %s", payload.name, payload.version, exc)
            return
        tenant = payload.tenant or envelope.tenant or DEFAULT_TENANT
        self._versions.setdefault((tenant, payload.name), {})[payload.version] = definition
        log.info("definition %s/%s:%s cached", tenant, payload.name, payload.version)

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("DefinitionsCache.start() was not called")
        return self._consumer
