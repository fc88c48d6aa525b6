"""Read-side commands: ``foldflow status ID``, ``foldflow events ID`` (tables from the
projections) and ``foldflow projections rebuild``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from foldflow.cli.ids import workflow_target
from foldflow.cli.output import FAILED, JsonOption, err, print_json
from foldflow.settings import get_settings

__all__ = ["app", "events", "register", "status"]

app = typer.Typer(help="The PostgreSQL projections.", no_args_is_help=True)
console = Console()
TenantOption = typer.Option(
    None,
    "--tenant",
    "-t",
    help="The tenant whose workflow ID is (default: the default tenant). An ID of the form "
    "@<tenant>/<id> (a workflow key, as logs show it) names its tenant itself.",
)
STATUS_COLOURS = {"completed": "green", "running": "cyan", "paused": "yellow",
                  "compensating": "yellow", "failed": "red", "compensated": "magenta",
                  "compensation_failed": "red", "cancelled": "magenta", "terminated": "red",
                  "succeeded": "green", "retrying": "yellow", "skipped": "dim"}


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def _coloured(status: str | None) -> str:
    if status is None:
        return ""
    colour = STATUS_COLOURS.get(status)
    return f"[{colour}]{status}[/]" if colour else status


NOT_FOUND = "Exit codes: 0 shown; 1 no such workflow (or PostgreSQL failed)."


def status(
    workflow_id: str = typer.Argument(..., help="The workflow id."),
    tenant: str | None = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """A workflow's status and steps, as projected in PostgreSQL."""
    from foldflow.projections.db import make_engine
    from foldflow.projections.queries import get_workflow

    tenant, workflow_id, _key = workflow_target(workflow_id, tenant)
    engine = make_engine(get_settings(), pool_size=1)
    detail = get_workflow(engine, tenant, workflow_id)
    if detail is None:
        err.print(f"no workflow {workflow_id} for tenant {tenant}", style="red",
                  highlight=False, markup=False)
        raise typer.Exit(FAILED)
    if as_json:
        print_json(detail)
        return
    head = Table(show_header=False, title=f"workflow {detail.id}")
    for key, value in (
        ("status", _coloured(detail.status)),
        ("definition", f"{detail.definition} v{detail.version}"),
        ("tenant", detail.tenant),
        ("created", _when(detail.created_at)),
        ("updated", _when(detail.updated_at)),
        ("completed", _when(detail.completed_at)),
        ("events", str(detail.last_sequence)),
        ("input", _short(detail.input, 100)),
        ("output", _short(detail.output, 100)),
        ("error", detail.error or ""),
    ):
        head.add_row(key, value)
    console.print(head)
    steps = Table(title="steps")
    for column in ("step", "status", "task", "attempts", "output / error", "started",
                   "completed", "compensation"):
        steps.add_column(column)
    for s in detail.steps:
        outcome = s.error if s.status in {"failed", "retrying"} else _short(s.output)
        comp = f"{_coloured(s.compensation_status)} ({s.compensation_attempts})" \
            if s.compensation_status else ""
        steps.add_row(s.step_id, _coloured(s.status), s.task_type or s.detail or "",
                      str(s.attempts), outcome or s.detail or "", _when(s.started_at),
                      _when(s.completed_at), comp)
    console.print(steps)


def events(
    workflow_id: str = typer.Argument(..., help="The workflow id."),
    tenant: str | None = TenantOption,
    after: int = typer.Option(0, "--after", min=0, help="Only events after this sequence."),
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000,
                              help="At most this many events."),
    as_json: bool = JsonOption,
) -> None:
    """A workflow's history: one row per event, in sequence order."""
    from foldflow.projections.db import make_engine
    from foldflow.projections.queries import get_history

    tenant, workflow_id, _key = workflow_target(workflow_id, tenant)
    engine = make_engine(get_settings(), pool_size=1)
    history = get_history(engine, tenant, workflow_id, after_sequence=after, limit=limit)
    if history is None:
        err.print(f"no workflow {workflow_id} for tenant {tenant}", style="red",
                  highlight=False, markup=False)
        raise typer.Exit(FAILED)
    if as_json:
        print_json(history)
        return
    table = Table(title=f"history of {workflow_id}")
    for column in ("seq", "type", "time", "payload"):
        table.add_column(column)
    for e in history:
        summary = ", ".join(f"{k}={_short(v, 40)}" for k, v in e.payload.items() if v is not None)
        table.add_row(str(e.sequence), e.event_type, _when(e.timestamp), _short(summary, 100))
    console.print(table)


@app.command("rebuild")
def rebuild(
    batch: int = typer.Option(2000, min=1, help="Records per transaction."),
) -> None:
    """Replay wf.events + wf.definitions from offset 0 into fresh tables, then swap them in."""
    from foldflow.projections.db import make_engine
    from foldflow.projections.rebuild import Rebuild, RebuildError

    settings = get_settings()
    engine = make_engine(settings, pool_size=1)
    job = Rebuild(settings, engine, batch=batch)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("prepare", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def phase(name: str) -> None:
            bar.update(task, description=name)

        try:
            applied = job.run(progress, on_phase=phase)
        except RebuildError as exc:
            err.print(f"[red]rebuild failed:[/red] {exc}", highlight=False)
            raise typer.Exit(FAILED) from exc
    console.print(f"[green]rebuilt and swapped in:[/green] {applied} events", highlight=False)


def register(root: typer.Typer) -> None:
    """Add ``status``, ``events`` and the ``projections`` group to the root app."""
    root.command("status", epilog=NOT_FOUND)(status)
    root.command("events", epilog=NOT_FOUND)(events)
    root.add_typer(app, name="projections")
