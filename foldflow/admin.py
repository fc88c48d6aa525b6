"""Creating and checking Foldflow's topics (docs/architecture.md) with Kafka's admin API.

``foldflow topics ensure``, ``foldflow up`` and tests call :func:`ensure_topics`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

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


def _wait_until_visible(admin: AdminClient, names: list[str], *, timeout: float) -> dict[str, int]:
    """Poll metadata until ``names`` show up: the broker learns of new topics asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        existing = _existing_partitions(admin, timeout=timeout)
        if all(name in existing for name in names) or time.monotonic() > deadline:
            return existing
        time.sleep(0.1)


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
    Existing topics whose partition count or ``cleanup.policy`` differs from the spec are
    reported as ``"differs"`` (Kafka cannot change either safely in place).
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
        existing = _wait_until_visible(admin, [s.name for s in missing], timeout=timeout)
        _check_co_partitioned(settings, existing)

    policies = _cleanup_policies(admin, [s.name for s in specs if s.name not in created], timeout)
    return [
        _outcome(
            spec,
            existing.get(spec.name, spec.partitions),
            created=spec.name in created,
            cleanup=policies.get(spec.name),
        )
        for spec in specs
    ]


def _cleanup_policies(admin: AdminClient, names: list[str], timeout: float) -> dict[str, str]:
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    policies = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entry = future.result().get("cleanup.policy")
        if entry is not None and entry.value is not None:
            policies[resource.name] = entry.value
    return policies


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.config),
    )


def _outcome(
    spec: TopicSpec, partitions: int, *, created: bool, cleanup: str | None
) -> TopicOutcome:
    wanted = spec.config.get("cleanup.policy", "delete")
    actual = cleanup or wanted
    rf = spec.replication_factor
    if created:
        return TopicOutcome(spec.name, partitions, rf, wanted, "created")
    notes = []
    if partitions != spec.partitions:
        notes.append(f"expected {spec.partitions} partitions")
    if actual != wanted:
        notes.append(f"expected cleanup.policy={wanted}")
    if notes:
        return TopicOutcome(spec.name, partitions, rf, actual, "differs", "; ".join(notes))
    return TopicOutcome(spec.name, partitions, rf, actual, "ok")
