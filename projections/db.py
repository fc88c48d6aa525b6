"""Engines and migrations: the two ways this package reaches PostgreSQL's shape."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "make_engine", "upgrade"]

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
