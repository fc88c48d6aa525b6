"""``foldflow keys create``: a gateway API key for a tenant (printed once, stored hashed)."""

from __future__ import annotations

import typer
from rich.console import Console

from foldflow.settings import get_settings

__all__ = ["app"]

app = typer.Typer(help="API keys of the REST gateway.", no_args_is_help=True)
err = Console(stderr=True)


@app.command("create")
def create(
    tenant: str = typer.Option(..., "--tenant", "-t", help="The tenant the key acts for."),
    scopes: list[str] = typer.Option(
        ...,
        "--scopes",
        "-s",
        help="workflows:read, workflows:write, definitions:write, dlq:read, dlq:replay "
        "(repeat or comma-separate).",
    ),
    name: str = typer.Option("cli", "--name", "-n", help="A label to recognise the key by."),
) -> None:
    """Create a key and print it on stdout; it cannot be shown again."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from gateway.keys import create_api_key

    wanted = [s.strip() for item in scopes for s in item.split(",") if s.strip()]
    engine = create_engine(get_settings().database_url)
    try:
        key = create_api_key(engine, tenant, wanted, name)
    except ValueError as exc:
        err.print(f"[red]refused:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    except (OperationalError, ProgrammingError) as exc:
        err.print(
            f"[red]could not store the key:[/red] {exc.orig}. "
            "Is PostgreSQL up and migrated (`foldflow db upgrade`)?",
            highlight=False,
        )
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    print(key)
    err.print(f"key {name!r} for tenant {tenant!r} with {', '.join(wanted)}; shown only once")
