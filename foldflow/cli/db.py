"""``foldflow db upgrade|current``: the projection tables' schema (Alembic migrations)."""

from __future__ import annotations

import typer
from rich.console import Console

from foldflow.cli.output import FAILED, JsonOption, err, print_json
from foldflow.settings import get_settings

__all__ = ["app"]

app = typer.Typer(help="The PostgreSQL schema of the projections.", no_args_is_help=True)
console = Console()


@app.command("upgrade", epilog="Exit codes: 0 migrated; 1 PostgreSQL failed.")
def upgrade(
    revision: str = typer.Option("head", help="Alembic revision to migrate to."),
) -> None:
    """Create or migrate the projection tables (idempotent)."""
    from sqlalchemy.exc import OperationalError

    from foldflow.projections.db import upgrade as run_upgrade

    settings = get_settings()
    try:
        run_upgrade(settings, revision=revision)
    except OperationalError as exc:
        err.print(f"[red]PostgreSQL unreachable:[/red] {exc.orig}", highlight=False)
        raise typer.Exit(FAILED) from exc
    console.print(f"[green]database at {revision}[/green]", highlight=False)


@app.command("current", epilog="Exit codes: 0 the schema is at the newest migration; 1 it is "
                               "behind (`foldflow db upgrade`) or PostgreSQL failed.")
def current(as_json: bool = JsonOption) -> None:
    """Show the database's migration revision and whether it is the newest one."""
    from sqlalchemy.exc import OperationalError

    from foldflow.projections.db import revisions

    settings = get_settings()
    try:
        found = revisions(settings)
    except OperationalError as exc:
        err.print(f"[red]PostgreSQL unreachable:[/red] {exc.orig}", highlight=False)
        raise typer.Exit(FAILED) from exc
    if as_json:
        print_json({"current": found.current, "heads": found.heads,
                    "up_to_date": found.up_to_date})
    else:
        now = ", ".join(found.current) or "none (never migrated)"
        state = ("[green]up to date[/green]" if found.up_to_date
                 else "[yellow]behind: run `foldflow db upgrade`[/yellow]")
        console.print(f"current: {now}\nnewest:  {', '.join(found.heads)}\n{state}",
                      highlight=False)
    if not found.up_to_date:
        raise typer.Exit(FAILED)
