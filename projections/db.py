"""Engines and migrations: the two ways this package reaches PostgreSQL's shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

__all__ = ["MIGRATIONS_DIR", "Revisions", "alembic_config", "make_engine", "revisions", "upgrade"]

#: The Alembic script directory, shipped as package data.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(database_url: str, *, pool_size: int = 5) -> Engine:
    """An engine that survives a PostgreSQL restart (connections are pinged before use)."""
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url`` without an ``alembic.ini`` on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, *, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class Revisions:
    """Where the database's schema is, and where this code's migrations end."""

    current: tuple[str, ...]  # empty: never migrated
    heads: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        """True when the database is at every head of this code's migrations."""
        return set(self.current) == set(self.heads)


def revisions(database_url: str) -> Revisions:
    """The database's current Alembic revision(s) and the migrations' head(s)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(database_url)).get_heads()
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    return Revisions(current=tuple(sorted(current)), heads=tuple(sorted(heads)))
