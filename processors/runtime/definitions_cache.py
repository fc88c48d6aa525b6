"""The orchestrator's in-memory view of ``wf.definitions`` (docs/internals.md).

A confluent-kafka consumer without a group (every partition assigned, from the
beginning, ``read_committed``) keeps every registered ``(tenant, name, version)``: each
tenant has its own namespace, and "latest" is the tenant's highest version. A record is
read by its payload, not its key, so records keyed ``name:version`` (before keys named
the tenant) still load; one without a tenant belongs to the default tenant.

The loop calls :meth:`DefinitionsCache.poll` between transactions. To close the
register-then-start race, :meth:`DefinitionsCache.resolve` of a definition the cache
lacks first reads (bounded) up to the topic's end offsets as they are *now*; only then
is the definition unknown. The end is detected from the consumer's end-of-partition
events, not by counting offsets (a transactional writer leaves markers between records).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.schemas.codec import CodecError, decode
from foldflow.schemas.messages import DEFAULT_TENANT, DefinitionRegistered, parse_definition_key
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["DefinitionsCache"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict[str, Any]], Consumer]


class DefinitionsCache:
    """Every registered definition version, read from ``wf.definitions`` since offset 0."""

    def __init__(
        self,
        settings: Settings,
        *,
        catch_up_timeout: float = 10.0,
        consumer_factory: ConsumerFactory = Consumer,
    ) -> None:
        self._settings = settings
        self._topic = Topology.of(settings).definitions
        self._catch_up_timeout = catch_up_timeout
        self._factory = consumer_factory
        self._versions: dict[tuple[str, str], dict[int, Definition]] = {}
        self._consumer: Consumer | None = None
        #: partition -> the offset the consumer reached (next to read), from records and
        #: end-of-partition events
        self._reached: dict[int, int] = {}

    def start(self, *, timeout: float = 30.0) -> None:
        """Assign every partition of the topic from the beginning (returns at once)."""
        consumer = self._factory(kafka_config(self._settings, {
            "group.id": f"{self._settings.topic_prefix}foldflow-orchestrator-definitions-"
                        f"{uuid.uuid4().hex}",  # never joined, never committed
            "client.id": "foldflow-orchestrator-definitions",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
            "logger": logging.getLogger("librdkafka"),
        }))  # fmt: skip
        metadata = consumer.list_topics(self._topic, timeout=timeout).topics.get(self._topic)
        if metadata is None or metadata.error is not None:
            consumer.close()
            raise KafkaException(f"topic {self._topic} is missing (run `foldflow topics ensure`)")
        consumer.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
        )
        self._consumer = consumer

    def close(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def get(self, tenant: str, name: str, version: int | None) -> Definition | None:
        """``tenant``'s definition ``name`` at ``version`` (None: its latest), if already read."""
        versions = self._versions.get((tenant, name))
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def resolve(self, tenant: str, name: str, version: int | None) -> Definition | None:
        """Like :meth:`get`, but on a miss first catch up with the topic's current end."""
        found = self.get(tenant, name, version)
        if found is None and self.catch_up(timeout=self._catch_up_timeout):
            found = self.get(tenant, name, version)
        return found

    def poll(self, *, max_records: int = 500) -> int:
        """Read what arrived (never waits); return how many records were applied."""
        consumer = self._require_consumer()
        applied = 0
        for msg in consumer.consume(num_messages=max_records, timeout=0):
            applied += self._handle(msg)
        return applied

    def catch_up(self, *, timeout: float) -> bool:
        """Read until everything on the topic now has been read; False on timeout."""
        consumer = self._require_consumer()
        deadline = time.monotonic() + timeout
        try:
            ends = {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout)[1]
                for tp in consumer.assignment()
            }
        except KafkaException as exc:
            log.warning("definitions cache cannot read the end offsets of %s: %s",
                        self._topic, exc)  # fmt: skip
            return False
        while any(self._reached.get(p, 0) < end for p, end in ends.items()):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("definitions cache did not catch up with %s in %.1fs",
                            self._topic, timeout)  # fmt: skip
                return False
            msg = consumer.poll(min(left, 0.5))
            if msg is not None:
                self._handle(msg)
        return True

    def _handle(self, msg: Any) -> int:
        error = msg.error()
        partition = msg.partition()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._reached[partition] = max(self._reached.get(partition, 0), msg.offset())
            else:
                log.warning("reading %s: %s", self._topic, error)
            return 0
        self._reached[partition] = max(self._reached.get(partition, 0), msg.offset() + 1)
        self.apply(msg.key(), msg.value())
        return 1

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic (a registration, or a tombstone withdrawing one)."""
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

    def _require_consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("DefinitionsCache.start() was not called")
        return self._consumer
