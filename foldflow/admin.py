"""Creating and checking the topics of DESIGN §3 with Kafka's admin API.

``foldflow topics ensure``, ``foldflow up`` and tests call :func:`ensure_topics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, CO_PARTITIONED, TopicSpec, topic_specs

__all__ = ["PartitionMismatch", "TopicOutcome", "admin_client", "ensure_topics"]


class PartitionMismatch(RuntimeError):
    """A co-partitioned topic already exists with a different partition count."""


@dataclass(frozen=True)
class TopicOutcome:
    """What :func:`ensure_topics` did for one topic."""

    name: str
    partitions: int
    replication_factor: int
    cleanup_policy: str
    outcome: Literal["created", "ok", "differs"]
    note: str = ""


def admin_client(settings: Settings) -> AdminClient:
    """An admin client for ``settings.kafka_bootstrap``."""
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


def _existing_partitions(admin: AdminClient, *, timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def _check_co_partitioned(settings: Settings, existing: dict[str, int]) -> None:
    wanted = settings.partitions
    bad = {
        settings.topic_prefix + base: existing[settings.topic_prefix + base]
        for base in CO_PARTITIONED
        if settings.topic_prefix + base in existing
        and existing[settings.topic_prefix + base] != wanted
    }
    if bad:
        found = ", ".join(f"{name} has {n}" for name, n in sorted(bad.items()))
        raise PartitionMismatch(
            f"Co-partitioned topics must all have {wanted} partitions (FOLDFLOW_PARTITIONS), "
            f"but {found}. One workflow must live on one partition of each of "
            f"{', '.join(settings.topic_prefix + t for t in CO_PARTITIONED)}: set "
            "FOLDFLOW_PARTITIONS to match, or delete and recreate these topics."
        )


def ensure_topics(
    settings: Settings,
    *,
    task_types: tuple[str, ...] = BUILTIN_TASK_TYPES,
    admin: AdminClient | None = None,
    timeout: float = 30.0,
) -> list[TopicOutcome]:
    """Create every missing topic of :func:`topic_specs`; check the ones that exist.

    Idempotent. Raises :class:`PartitionMismatch` before creating anything when a
    co-partitioned topic exists with another partition count than ``settings.partitions``.
    Other existing topics whose partition count differs are reported as ``"differs"``.
    """
    admin = admin or admin_client(settings)
    specs = topic_specs(settings, task_types=task_types)
    existing = _existing_partitions(admin, timeout=timeout)
    _check_co_partitioned(settings, existing)

    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [_new_topic(s) for s in missing], request_timeout=timeout, operation_timeout=timeout
        )
        for name, future in futures.items():
            try:
                future.result()
                created.add(name)
            except KafkaException as exc:
                # Another process created it between our listing and our request.
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
        existing = _existing_partitions(admin, timeout=timeout)
        _check_co_partitioned(settings, existing)

    return [_outcome(spec, existing.get(spec.name, spec.partitions), spec.name in created)
            for spec in specs]


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.config),
    )


def _outcome(spec: TopicSpec, partitions: int, created: bool) -> TopicOutcome:
    cleanup = spec.config.get("cleanup.policy", "delete")
    if created:
        return TopicOutcome(spec.name, partitions, spec.replication_factor, cleanup, "created")
    if partitions != spec.partitions:
        return TopicOutcome(
            spec.name, partitions, spec.replication_factor, cleanup, "differs",
            f"expected {spec.partitions} partitions",
        )  # fmt: skip
    return TopicOutcome(spec.name, partitions, spec.replication_factor, cleanup, "ok")
