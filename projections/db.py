"""Engines and migrations: the two ways this package reaches PostgreSQL's shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

from foldflow.security import postgres_connect_args
from foldflow.settings import Settings

__all__ = [
    "MIGRATIONS_DIR",
    "Revisions",
    "alembic_config",
    "connection",
    "make_engine",
    "revisions",
    "upgrade",
]

#: The Alembic script directory, shipped as package data.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def connection(database: Settings | str) -> tuple[str, dict[str, Any]]:
    """The URL and the libpq TLS parameters (``FOLDFLOW_DATABASE_SSL*``) of ``database``:
    settings, or a bare URL (whose query string may carry its own ``sslmode``)."""
    if isinstance(database, Settings):
        return database.database_url, postgres_connect_args(database)
    return database, {}


def make_engine(
    database: Settings | str, *, pool_size: int = 5, connect_args: Mapping[str, Any] = {}
) -> Engine:
    """An engine that survives a PostgreSQL restart (connections are pinged before use).

    Give the settings (not only their URL) so their TLS options apply.
    """
    url, tls = connection(database)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, **tls, **connect_args},
    )


def alembic_config(database: Settings | str) -> Config:
    """An Alembic config for ``database`` without an ``alembic.ini`` on disk; the TLS
    parameters travel in ``config.attributes["connect_args"]`` (migrations/env.py)."""
    url, tls = connection(database)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connect_args"] = tls
    return config


def upgrade(database: Settings | str, *, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(database), revision)


@dataclass(frozen=True)
class Revisions:
    """Where the database's schema is, and where this code's migrations end."""

    current: tuple[str, ...]  # empty: never migrated
    heads: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        """True when the database is at every head of this code's migrations."""
        return set(self.current) == set(self.heads)


def revisions(database: Settings | str) -> Revisions:
    """The database's current Alembic revision(s) and the migrations' head(s)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(database)).get_heads()
    engine = make_engine(database, pool_size=1)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    return Revisions(current=tuple(sorted(current)), heads=tuple(sorted(heads)))
