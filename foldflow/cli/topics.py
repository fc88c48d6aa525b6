"""``foldflow topics ensure``: create or check every topic of DESIGN §3."""

from __future__ import annotations

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from foldflow.admin import PartitionMismatch, ensure_topics
from foldflow.settings import get_settings
from foldflow.topics import BUILTIN_TASK_TYPES

app = typer.Typer(help="The Kafka topics Foldflow uses (docs/operations.md).", no_args_is_help=True)
console = Console()


@app.command("ensure")
def ensure(
    task_type: list[str] = typer.Option(
        [], "--task-type", "-t", help="Extra task type to create a wf.tasks.<type> topic for."
    ),
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
        console.print(f"[red]refused:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    except KafkaException as exc:
        console.print(
            f"[red]Kafka at {settings.kafka_bootstrap} failed:[/red] {exc}. "
            "Is it up? (`foldflow stack up`)",
            highlight=False,
        )
        raise typer.Exit(1) from exc

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
