"""``foldflow keys create|list|revoke``: the gateway's API keys (stored hashed).

A key is printed once, by ``create``; ``list`` shows everything else about each key
(never the key or its hash); ``revoke`` stops a key: every gateway refuses it once its
cache of looked-up keys forgets it (``FOLDFLOW_GATEWAY_KEY_CACHE_S``, 5 s by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from foldflow.cli.output import JsonOption, print_json
from foldflow.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["app"]

app = typer.Typer(help="API keys of the REST gateway.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


@contextmanager
def _database() -> Iterator[Engine]:
    """An engine on the configured database; exits 1 with a hint when it is not usable."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from foldflow.projections.db import make_engine

    engine = make_engine(get_settings(), pool_size=1)
    try:
        yield engine
    except (OperationalError, ProgrammingError) as exc:
        err.print(
            f"[red]the api_keys table is not usable:[/red] {exc.orig}. "
            "Is PostgreSQL up and migrated (`foldflow db upgrade`)?",
            highlight=False,
        )
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


def _call(fn: Callable[[Engine], T]) -> T:
    with _database() as engine:
        return fn(engine)


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


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
    from foldflow.gateway.keys import issue_api_key

    wanted = [s.strip() for item in scopes for s in item.split(",") if s.strip()]
    try:
        key_id, key = _call(lambda engine: issue_api_key(engine, tenant, wanted, name))
    except ValueError as exc:
        err.print(f"[red]refused:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    print(key)
    err.print(
        f"key {key_id} ({name!r}) for tenant {tenant!r} with {', '.join(wanted)}; "
        "shown only once",
        highlight=False,
    )


@app.command("list")
def list_keys(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's keys."),
    as_json: bool = JsonOption,
) -> None:
    """Every stored key, oldest first: id, name, tenant, scopes, created, last used,
    revoked. Never the key itself. (Keys given by settings are not stored, so not listed.)"""
    from foldflow.gateway.keys import list_api_keys

    keys = _call(lambda engine: list_api_keys(engine, tenant=tenant))
    if as_json:
        print_json(keys)
        return
    table = Table(title="API keys")
    for column in ("id", "name", "tenant", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(str(k.id), k.name, k.tenant, " ".join(k.scopes), _when(k.created_at),
                      _when(k.last_used_at), _when(k.revoked_at))  # fmt: skip
    out.print(table)


@app.command("revoke")
def revoke(
    key_id: int = typer.Argument(..., help="The key's id (see `foldflow keys list`)."),
) -> None:
    """Revoke a key: gateways refuse it within FOLDFLOW_GATEWAY_KEY_CACHE_S (5 s by default).

    Exit codes: 0 revoked (or already), 1 no such key or no database.
    """
    from foldflow.gateway.keys import revoke_api_key

    info = _call(lambda engine: revoke_api_key(engine, key_id))
    if info is None:
        err.print(f"[red]no key {key_id}[/red]", highlight=False)
        raise typer.Exit(1)
    cache_s = get_settings().gateway_key_cache_s
    out.print(
        f"revoked key {info.id} ({info.name!r}) of tenant {info.tenant!r} at "
        f"{_when(info.revoked_at)}; gateways refuse it within {cache_s:g}s",
        highlight=False,
    )
