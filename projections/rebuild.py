"""``foldflow projections rebuild``: replay the topics into fresh tables, then swap them in.

1. :func:`prepare` creates every projection table in the schema ``foldflow_rebuild``
   (the same :mod:`foldflow.projections.models`, through ``schema_translate_map``).
2. :class:`Rebuild` replays ``wf.events`` and ``wf.definitions`` from their first offset
   into them (the same :func:`foldflow.projections.store.write_batch` as the live projector, so
   the result is the same by construction), until every partition reached the end
   offsets read up front; a second pass catches up with what arrived meanwhile.
3. :func:`swap` moves the live tables out and the rebuilt ones in, in ONE transaction
   under ``ACCESS EXCLUSIVE`` locks: readers wait a moment and then see the new tables,
   never a mix. ``projection_offsets`` is swapped too, so the live projector finds the
   stored positions changed, seeks to them and continues from there.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from foldflow.kafka import kafka_config
from foldflow.projections.apply import ProjectionError
from foldflow.projections.dberrors import is_refusal
from foldflow.projections.models import LIVE_TABLES, metadata, projection_offsets
from foldflow.projections.projector import PROJECTION, UnprojectableError, decode_record
from foldflow.projections.store import BatchResult, Record, TopicPartition, write_batch
from foldflow.schemas.codec import CodecError
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["REBUILD_SCHEMA", "Rebuild", "RebuildError", "prepare", "swap"]

REBUILD_SCHEMA = "foldflow_rebuild"
RETIRED_SCHEMA = "foldflow_retired"
#: pg advisory lock key: one rebuild at a time per database
LOCK_KEY = 0x466F_6C64_5265_6231  # "FoldReb1"

Progress = Callable[[int, int], None]  # (done, total) records


class RebuildError(RuntimeError):
    """The log cannot be replayed (a gap that no batch size resolves, a bad topic)."""


def _in_rebuild(conn: Connection) -> Connection:
    return conn.execution_options(schema_translate_map={None: REBUILD_SCHEMA})


def prepare(engine: Engine) -> None:
    """(Re)create the empty tables of the rebuild schema."""
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {REBUILD_SCHEMA}"))
        metadata.create_all(_in_rebuild(conn))


def swap(engine: Engine, *, projection: str = PROJECTION) -> None:
    """Swap the rebuilt tables in for the live ones, atomically."""
    names = [t.name for t in LIVE_TABLES]
    with engine.begin() as conn:
        live = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text("SET LOCAL lock_timeout = '60s'"))
        conn.execute(text(f"LOCK TABLE {', '.join(f'{live}.{n}' for n in names)} "
                          "IN ACCESS EXCLUSIVE MODE"))
        # positions of other projections (if any) survive the swap
        t = projection_offsets.name
        conn.execute(
            text(f"INSERT INTO {REBUILD_SCHEMA}.{t} SELECT * FROM {live}.{t} "
                 "WHERE projection <> :p ON CONFLICT DO NOTHING"),
            {"p": projection},
        )
        conn.execute(text(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {RETIRED_SCHEMA}"))
        for name in names:
            conn.execute(text(f"ALTER TABLE {live}.{name} SET SCHEMA {RETIRED_SCHEMA}"))
            conn.execute(text(f"ALTER TABLE {REBUILD_SCHEMA}.{name} SET SCHEMA {live}"))
        conn.execute(text(f"DROP SCHEMA {RETIRED_SCHEMA} CASCADE"))
        conn.execute(text(f"DROP SCHEMA {REBUILD_SCHEMA}"))


@dataclass
class _Partition:
    low: int
    high: int
    position: int | None = None  # stored next offset in the rebuild tables
    at_end: bool = False


class Rebuild:
    """Replays the topics into the rebuild schema; :meth:`run` does prepare, replay, swap."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        batch: int = 2000,
        max_batch: int = 50_000,
        projection: str = PROJECTION,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.batch = batch
        self.max_batch = max_batch
        self.projection = projection
        self.topology = Topology.of(settings)
        self.applied = 0
        self.consumer = Consumer(
            kafka_config(settings, {
                "group.id": f"{settings.topic_prefix}foldflow.rebuild.{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            })
        )
        self.partitions: dict[TopicPartition, _Partition] = {}

    def _watermarks(self) -> None:
        topics = [self.topology.events, self.topology.definitions]
        meta = self.consumer.list_topics(timeout=10)
        for topic in topics:
            if topic not in meta.topics or meta.topics[topic].error is not None:
                raise RebuildError(f"topic {topic} not found on {self.settings.kafka_bootstrap}")
            for p in meta.topics[topic].partitions:
                low, high = self.consumer.get_watermark_offsets(
                    KafkaTopicPartition(topic, p), timeout=10
                )
                state = self.partitions.setdefault((topic, p), _Partition(low, high))
                state.high = high
                state.at_end = (state.position or low) >= high

    @property
    def total(self) -> int:
        """Records to replay (end offsets minus first offsets)."""
        return sum(p.high - p.low for p in self.partitions.values())

    def _done(self) -> int:
        return sum((p.position or p.low) - p.low for p in self.partitions.values())

    def replay(self, progress: Progress | None = None) -> int:
        """Replay every partition to its end offset (read up front); return events applied."""
        self._watermarks()
        self.consumer.assign([
            KafkaTopicPartition(t, p, OFFSET_BEGINNING if s.position is None else s.position)
            for (t, p), s in sorted(self.partitions.items())
        ])
        batch = self.batch
        while not all(p.at_end for p in self.partitions.values()):
            messages = self.consumer.consume(batch, 0.5)
            records: list[Record] = []
            for msg in messages:
                tp = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        state = self.partitions[tp]
                        state.at_end = (msg.offset() or 0) >= state.high
                        continue
                    raise RebuildError(f"consumer error: {err}")
                try:
                    records.append(decode_record(msg, events_topic=self.topology.events))
                except (CodecError, UnprojectableError):
                    records.append(Record(tp[0], tp[1], msg.offset() or 0, None))
            if not records:
                continue
            expected = {tp: p.position for tp, p in self.partitions.items()}
            try:
                result = self._write(records, expected)
            except ProjectionError as exc:
                if batch >= self.max_batch:
                    raise RebuildError(f"the log cannot be replayed: {exc}") from exc
                batch = min(batch * 4, self.max_batch)
                for tp in sorted({(r.topic, r.partition) for r in records}):
                    pos = self.partitions[tp].position
                    self.partitions[tp].at_end = False
                    self.consumer.seek(KafkaTopicPartition(
                        tp[0], tp[1], OFFSET_BEGINNING if pos is None else pos))
                continue
            batch = self.batch
            if result.moved:
                raise RebuildError(f"rebuild tables written by someone else: {result.moved}")
            for tp, offset in result.positions.items():
                state = self.partitions[tp]
                state.position = offset
                state.at_end = state.at_end or offset >= state.high
            self.applied += result.events
            if progress:
                progress(self._done(), self.total)
        return self.applied

    def _write(self, records: list[Record], expected: dict[TopicPartition, int | None]
               ) -> BatchResult:
        """One batch, as the live projector writes it (event by event when refused)."""
        try:
            with self.engine.begin() as conn:
                return write_batch(_in_rebuild(conn), projection=self.projection,
                                   records=records, expected=expected)
        except Exception as exc:
            if not is_refusal(exc):
                raise
        with self.engine.begin() as conn:
            return write_batch(_in_rebuild(conn), projection=self.projection,
                               records=records, expected=expected, careful=True)

    def run(self, progress: Progress | None = None, *, on_phase: Callable[[str], None]
            | None = None) -> int:
        """Prepare, replay, catch up with what arrived meanwhile, swap; return events applied."""
        say = on_phase or (lambda _phase: None)
        guard = self.engine.connect()  # holds the session lock until the end
        try:
            got = guard.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})
            if not got.scalar_one():
                raise RebuildError("another rebuild is running on this database")
            guard.commit()
            say("prepare")
            prepare(self.engine)
            say("replay")
            self.replay(progress)
            say("catch-up")
            self.replay(progress)
            say("swap")
            swap(self.engine, projection=self.projection)
        finally:
            with contextlib.suppress(DBAPIError):  # a dead session has released it anyway
                guard.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                guard.commit()
            guard.close()
            self.consumer.close()
        return self.applied
