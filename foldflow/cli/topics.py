"""``foldflow topics ensure|list``: create, check and show Foldflow's topics
(docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from foldflow.admin import PartitionMismatch, admin_client, ensure_topics
from foldflow.cli.output import FAILED, USAGE, JsonOption, err, print_json
from foldflow.kafka import connection_failure
from foldflow.settings import Settings, get_settings
from foldflow.topics import BUILTIN_TASK_TYPES, TASKS_PREFIX, topic_specs

__all__ = ["TopicInfo", "app", "list_topics"]

app = typer.Typer(
    help="Foldflow's Kafka topics (docs/architecture.md, docs/operations.md).", no_args_is_help=True
)
console = Console()


def _kafka_failed(settings: Settings, exc: KafkaException) -> typer.Exit:
    hint = connection_failure()
    if hint is not None:
        err.print(f"[red]{hint}[/red]", highlight=False)
        return typer.Exit(FAILED)
    err.print(f"[red]Kafka at {settings.kafka_bootstrap} failed:[/red] {exc}. "
              "Is it up? (`foldflow stack up`)", highlight=False)
    return typer.Exit(FAILED)


@app.command("ensure", epilog="Exit codes: 0 every topic exists; 1 Kafka failed; "
                              "2 co-partitioned topics disagree on their partition count.")
def ensure(
    task_type: list[str] = typer.Option(
        [], "--task-type", help="Extra task type to create a wf.tasks.<type> topic for."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create missing topics and check existing ones (idempotent).

    Replicas and min.insync.replicas come from FOLDFLOW_REPLICATION_FACTOR and
    FOLDFLOW_MIN_INSYNC_REPLICAS, else from the cluster's defaults (docs/operations.md).
    """
    settings = get_settings()
    types = tuple(dict.fromkeys((*BUILTIN_TASK_TYPES, *task_type)))
    try:
        outcomes = ensure_topics(settings, task_types=types)
    except PartitionMismatch as exc:
        err.print(f"[red]refused:[/red] {exc}", highlight=False)
        raise typer.Exit(USAGE) from exc
    except KafkaException as exc:
        raise _kafka_failed(settings, exc) from exc
    if as_json:
        print_json(outcomes)
        return
    table = Table(title=f"Topics on {settings.kafka_bootstrap}")
    for column in ("topic", "partitions", "rf", "min isr", "cleanup", "outcome"):
        table.add_column(column)
    colours = {"created": "green", "ok": "cyan", "differs": "yellow"}
    for o in outcomes:
        label = f"[{colours[o.outcome]}]{o.outcome}[/]" + (f" ({o.note})" if o.note else "")
        isr = "-" if o.min_insync_replicas is None else str(o.min_insync_replicas)
        table.add_row(o.name, str(o.partitions), str(o.replication_factor), isr,
                      o.cleanup_policy, label)  # fmt: skip
    console.print(table)


@dataclass(frozen=True)
class TopicInfo:
    """One Foldflow topic as the broker has it."""

    name: str
    partitions: int
    replication_factor: int
    cleanup_policy: str
    retention_ms: int | None  # None: compacted or unset; -1: kept forever
    role: str  # commands, results, events, definitions, dlq, tasks, other


def _role(settings: Settings, name: str) -> str:
    base = name.removeprefix(settings.topic_prefix)
    if base.startswith(TASKS_PREFIX):
        return "tasks"
    return base.removeprefix("wf.") if base.startswith("wf.") else "other"


def list_topics(settings: Settings, *, timeout: float = 30.0) -> list[TopicInfo]:
    """The topics of this deployment (``topic_prefix``: the ``wf.*`` ones and the
    orchestrator's own), with what the broker says about each."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout)
    ours = sorted(
        name for name, topic in metadata.topics.items()
        if topic.error is None and name.startswith(settings.topic_prefix)
        and (name.removeprefix(settings.topic_prefix).startswith("wf.")
             or name.removeprefix(settings.topic_prefix).startswith("foldflow-"))
    )  # fmt: skip
    configs: dict[str, dict[str, str | None]] = {}
    if ours:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in ours]
        for resource, future in admin.describe_configs(resources,
                                                       request_timeout=timeout).items():
            entries = future.result()
            configs[resource.name] = {k: entries[k].value for k in
                                      ("cleanup.policy", "retention.ms") if k in entries}
    infos = []
    for name in ours:
        partitions = metadata.topics[name].partitions
        config = configs.get(name, {})
        policy = config.get("cleanup.policy") or "delete"
        retention = config.get("retention.ms")
        infos.append(TopicInfo(
            name=name, partitions=len(partitions),
            replication_factor=max((len(p.replicas) for p in partitions.values()), default=0),
            cleanup_policy=policy,
            retention_ms=int(retention) if retention and "delete" in policy else None,
            role=_role(settings, name),
        ))  # fmt: skip
    return infos


def _retention(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 0:
        return "forever"
    days, rest = divmod(ms, 86_400_000)
    return f"{days}d" if not rest else f"{ms / 3_600_000:g}h"


@app.command("list", epilog="Exit codes: 0 listed (also when some are missing); 1 Kafka "
                            "failed.")
def list_(as_json: bool = JsonOption) -> None:
    """Show this deployment's topics on the broker, and the expected ones that are missing."""
    settings = get_settings()
    try:
        infos = list_topics(settings)
    except KafkaException as exc:
        raise _kafka_failed(settings, exc) from exc
    present = {i.name for i in infos}
    missing = [s.name for s in topic_specs(settings) if s.name not in present]
    if as_json:
        print_json({"topics": infos, "missing": missing})
        return
    table = Table(title=f"Foldflow topics on {settings.kafka_bootstrap}")
    for column in ("topic", "role", "partitions", "rf", "cleanup", "retention"):
        table.add_column(column)
    for i in infos:
        table.add_row(i.name, i.role, str(i.partitions), str(i.replication_factor),
                      i.cleanup_policy, _retention(i.retention_ms))
    console.print(table)
    if missing:
        console.print(f"[yellow]missing:[/yellow] {', '.join(missing)} "
                      "(`foldflow topics ensure` creates them)", highlight=False)
