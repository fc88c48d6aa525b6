"""``foldflow db upgrade``: migrate the projection tables (Alembic, DESIGN §8)."""

from __future__ import annotations

import typer
from rich.console import Console

from foldflow.settings import get_settings

__all__ = ["app"]

app = typer.Typer(help="The PostgreSQL schema of the projections.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade(
    revision: str = typer.Option("head", help="Alembic revision to migrate to."),
) -> None:
    """Create or migrate the projection tables (idempotent)."""
    from sqlalchemy.exc import OperationalError

    from projections.db import upgrade as run_upgrade

    settings = get_settings()
    try:
        run_upgrade(settings.database_url, revision=revision)
    except OperationalError as exc:
        console.print(f"[red]PostgreSQL unreachable:[/red] {exc.orig}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[green]database at {revision}[/green]", highlight=False)
