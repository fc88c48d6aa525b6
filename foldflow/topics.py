"""The topology in one place: topic names, their specs, consumer groups.

The table is in docs/architecture.md. Runners and poll loops live elsewhere; they ask this
module for names.
"""

from __future__ import annotations

from dataclasses import dataclass

from foldflow.settings import Settings

DAY_MS = 24 * 60 * 60 * 1000

COMMANDS = "wf.commands"
RESULTS = "wf.results"
EVENTS = "wf.events"
DEFINITIONS = "wf.definitions"
DLQ = "wf.dlq"
ORCHESTRATOR_STATE = "wf.orchestrator-state"
TASKS_PREFIX = "wf.tasks."
WORKER_GROUP_PREFIX = "wf.worker."

#: The task types the built-in demo workers serve; `foldflow topics ensure` creates their topics.
BUILTIN_TASK_TYPES = ("builtin.echo", "builtin.sleep", "builtin.fail", "builtin.http")

#: Topics that must share one partition count so a workflow lives on one partition of each.
CO_PARTITIONED = (COMMANDS, RESULTS, EVENTS, ORCHESTRATOR_STATE)

#: The state topic's segments roll at this size: compaction only cleans closed segments,
#: and an orchestrator that takes a partition over reads all of it.
STATE_SEGMENT_BYTES = 32 * 1024 * 1024


def task_topic(task_type: str, *, prefix: str = "") -> str:
    """The topic that carries ``task.execute.v1`` commands for one task type."""
    return f"{prefix}{TASKS_PREFIX}{task_type}"


def worker_group(task_type: str, *, prefix: str = "") -> str:
    """The consumer group of the workers that serve one task type."""
    return f"{prefix}{WORKER_GROUP_PREFIX}{task_type}"


@dataclass(frozen=True)
class TopicSpec:
    """What `foldflow topics ensure` creates or checks.

    ``replication_factor`` None: the cluster's ``default.replication.factor``; a config
    without ``min.insync.replicas`` takes the cluster's own.
    """

    name: str
    partitions: int
    replication_factor: int | None
    config: dict[str, str]


def topic_specs(settings: Settings, *, task_types: tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic of Foldflow (plus one per given task type) with its partitions and cleanup.

    Replication comes from settings when given there, else from the cluster's defaults
    (``default.replication.factor``, ``min.insync.replicas``): 1 on one local broker,
    3 and 2 on a local cluster of three (``foldflow stack up --brokers 3``).
    """
    p, rf, prefix = settings.partitions, settings.replication_factor, settings.topic_prefix
    isr = (
        {}
        if settings.min_insync_replicas is None
        else {"min.insync.replicas": str(settings.min_insync_replicas)}
    )

    def delete(days: int) -> dict[str, str]:
        retention = "-1" if days < 0 else str(days * DAY_MS)
        return {"cleanup.policy": "delete", "retention.ms": retention, **isr}

    specs = [
        TopicSpec(prefix + COMMANDS, p, rf, delete(7)),
        TopicSpec(prefix + RESULTS, p, rf, delete(7)),
        TopicSpec(prefix + EVENTS, p, rf, delete(-1)),
        TopicSpec(prefix + DEFINITIONS, 1, rf, {"cleanup.policy": "compact", **isr}),
        TopicSpec(prefix + DLQ, p, rf, delete(30)),
        TopicSpec(prefix + ORCHESTRATOR_STATE, p, rf, {
            "cleanup.policy": "compact", "segment.bytes": str(STATE_SEGMENT_BYTES), **isr,
        }),
    ]
    specs += [TopicSpec(task_topic(t, prefix=prefix), p, rf, delete(7)) for t in task_types]
    return specs


@dataclass(frozen=True)
class Topology:
    """The topic and group names of one deployment (every name carries ``topic_prefix``)."""

    prefix: str = ""

    @classmethod
    def of(cls, settings: Settings) -> Topology:
        return cls(prefix=settings.topic_prefix)

    @property
    def commands(self) -> str:
        return self.prefix + COMMANDS

    @property
    def results(self) -> str:
        return self.prefix + RESULTS

    @property
    def events(self) -> str:
        return self.prefix + EVENTS

    @property
    def definitions(self) -> str:
        return self.prefix + DEFINITIONS

    @property
    def dlq(self) -> str:
        return self.prefix + DLQ

    @property
    def orchestrator_state(self) -> str:
        return self.prefix + ORCHESTRATOR_STATE

    def task(self, task_type: str) -> str:
        return task_topic(task_type, prefix=self.prefix)

    def worker_group(self, task_type: str) -> str:
        return worker_group(task_type, prefix=self.prefix)
