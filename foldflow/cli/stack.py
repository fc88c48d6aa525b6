"""``foldflow stack up|down|status``: Kafka and PostgreSQL only."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from foldflow import stack as local_stack
from foldflow.cli.output import FAILED, JsonOption, print_json
from foldflow.settings import MAX_LOCAL_BROKERS, get_settings

app = typer.Typer(
    help="The local Kafka + PostgreSQL stack (no Docker needed).", no_args_is_help=True
)
console = Console()


@app.command("up")
def up(
    brokers: int | None = typer.Option(
        None,
        "--brokers",
        min=1,
        max=MAX_LOCAL_BROKERS,
        help="Kafka nodes to run (default FOLDFLOW_KAFKA_BROKERS, 1). With 3 or more, "
        "topics get 3 replicas and min.insync.replicas=2; node k listens on the bootstrap "
        "port + 2(k-1). See docs/operations.md.",
    ),
) -> None:
    """Start the local Kafka (KRaft) and PostgreSQL if they are not running."""
    settings = get_settings()
    if brokers is not None:
        settings = settings.model_copy(update={"kafka_brokers": brokers})
    try:
        local_stack.up(settings, report=lambda line: console.print(line, highlight=False))
    except local_stack.StackError as exc:
        console.print(f"[red]stack up failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc


@app.command("down")
def down() -> None:
    """Stop what `foldflow stack up` started from this checkout (every node), nothing else."""
    local_stack.down(get_settings(), report=lambda line: console.print(line, highlight=False))


@app.command("status", epilog="Exit codes: 0 both answer; 1 Kafka or PostgreSQL does not.")
def status(as_json: bool = JsonOption) -> None:
    """Show whether Kafka (each node) and PostgreSQL answer, and who started them."""
    parts = local_stack.status(get_settings())
    if as_json:
        print_json(parts)
        if not all(p.running for p in parts):
            raise typer.Exit(FAILED)
        return
    table = Table(title="Foldflow local stack")
    for column in ("part", "address", "state", "managed here", "detail"):
        table.add_column(column)
    for part in parts:
        table.add_row(
            part.name,
            part.address,
            "[green]running[/green]" if part.running else "[red]down[/red]",
            "yes" if part.managed else "no",
            part.detail,
        )
    console.print(table)
    if not all(p.running for p in parts):
        raise typer.Exit(FAILED)
