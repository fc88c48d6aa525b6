"""Creating and checking Foldflow's topics (docs/architecture.md) with Kafka's admin API.

``foldflow topics ensure``, ``foldflow up`` and tests call :func:`ensure_topics`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from foldflow.kafka import kafka_config
from foldflow.kafka import metadata as kafka_metadata
from foldflow.settings import Settings
from foldflow.topics import BUILTIN_TASK_TYPES, CO_PARTITIONED, TopicSpec, topic_specs

__all__ = [
    "PartitionMismatch",
    "TopicOutcome",
    "admin_client",
    "ensure_topics",
    "ensure_topics_at_start",
]

log = logging.getLogger(__name__)


class PartitionMismatch(RuntimeError):
    """A co-partitioned topic already exists with a different partition count."""


@dataclass(frozen=True)
class TopicOutcome:
    """What :func:`ensure_topics` did for one topic: the partitions, replicas and
    ``min.insync.replicas`` it has on the cluster (not only what was asked)."""

    name: str
    partitions: int
    replication_factor: int
    cleanup_policy: str
    outcome: Literal["created", "ok", "differs"]
    note: str = ""
    min_insync_replicas: int | None = None


def admin_client(settings: Settings) -> AdminClient:
    """An admin client for ``settings.kafka_bootstrap``."""
    return AdminClient(kafka_config(settings))


def _existing_partitions(admin: AdminClient, *, timeout: float) -> dict[str, int]:
    return {name: n for name, (n, _) in _existing(admin, timeout=timeout).items()}


def _existing(admin: AdminClient, *, timeout: float) -> dict[str, tuple[int, int]]:
    """``{topic: (partitions, replicas of its first partition)}`` of every topic."""
    metadata = kafka_metadata(admin, timeout=timeout)
    return {
        name: (len(t.partitions), len(t.partitions[min(t.partitions)].replicas))
        for name, t in metadata.topics.items()
        if t.error is None and t.partitions
    }


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
    Existing topics whose partition count or ``cleanup.policy`` differs from the spec, or
    whose replicas or ``min.insync.replicas`` differ from the ones settings ask for, are
    reported as ``"differs"`` (Kafka cannot change partitions or cleanup safely in place;
    replication is changed with a reassignment). Without replication settings, topics get
    the cluster's defaults.
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

    actual = _existing(admin, timeout=timeout)
    configs = _topic_configs(admin, [s.name for s in specs], timeout)
    return [
        _outcome(
            spec,
            *actual.get(spec.name, (spec.partitions, spec.replication_factor or 0)),
            created=spec.name in created,
            config=configs.get(spec.name, {}),
        )
        for spec in specs
    ]


def ensure_topics_at_start(
    settings: Settings,
    *,
    task_types: tuple[str, ...] = BUILTIN_TASK_TYPES,
    admin: AdminClient | None = None,
    wait_s: float = 60.0,
    timeout: float = 30.0,
) -> list[TopicOutcome]:
    """:func:`ensure_topics` for a service starting up: a broker that cannot be reached (a
    restart, a rolling upgrade, a stack still coming up) is asked again for up to ``wait_s``
    seconds more, as PostgreSQL is; a :class:`PartitionMismatch` is raised at once.
    ``timeout``: of each attempt."""
    admin = admin or admin_client(settings)
    for attempt in Retrying(retry=retry_if_exception_type(KafkaException),
                            wait=wait_exponential(multiplier=0.2, max=5),
                            stop=stop_after_delay(wait_s), reraise=True,
                            before_sleep=_log_unreachable):  # fmt: skip
        with attempt:
            return ensure_topics(settings, task_types=task_types, admin=admin, timeout=timeout)
    raise AssertionError("unreachable: Retrying reraises")  # pragma: no cover


def _log_unreachable(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.warning("Kafka cannot prepare the topics yet (%s); retrying", exc)


def _topic_configs(
    admin: AdminClient, names: list[str], timeout: float
) -> dict[str, dict[str, str]]:
    """``cleanup.policy`` and ``min.insync.replicas`` of each topic, as the cluster has them."""
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    found: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entries = future.result()
        found[resource.name] = {
            key: entry.value
            for key in ("cleanup.policy", "min.insync.replicas")
            if (entry := entries.get(key)) is not None and entry.value is not None
        }
    return found


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        # -1: the cluster's default.replication.factor (KIP-464)
        replication_factor=spec.replication_factor or -1,
        config=dict(spec.config),
    )


def _outcome(
    spec: TopicSpec, partitions: int, replicas: int, *, created: bool, config: dict[str, str]
) -> TopicOutcome:
    wanted = spec.config.get("cleanup.policy", "delete")
    actual = config.get("cleanup.policy", wanted)
    isr_text = config.get("min.insync.replicas")
    min_isr = int(isr_text) if isr_text is not None and isr_text.isdigit() else None
    notes = []
    if not created and partitions != spec.partitions:
        notes.append(f"expected {spec.partitions} partitions")
    if not created and actual != wanted:
        notes.append(f"expected cleanup.policy={wanted}")
    if spec.replication_factor is not None and replicas != spec.replication_factor:
        notes.append(f"expected {spec.replication_factor} replicas")
    wanted_isr = spec.config.get("min.insync.replicas")
    if wanted_isr is not None and isr_text is not None and isr_text != wanted_isr:
        notes.append(f"expected min.insync.replicas={wanted_isr}")
    if min_isr is not None and replicas > 1 and min_isr >= replicas:
        notes.append(f"min.insync.replicas={min_isr} of {replicas} replicas: one broker "
                     "down stops every write")  # fmt: skip
    outcome: Literal["created", "ok", "differs"] = (
        "differs" if notes else ("created" if created else "ok")
    )
    return TopicOutcome(
        spec.name, partitions, replicas, actual, outcome, "; ".join(notes), min_isr
    )
