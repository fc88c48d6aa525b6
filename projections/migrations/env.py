"""Alembic environment: the URL comes from the config (set by
:func:`foldflow.projections.db.upgrade`) or, failing that, from ``Settings().database_url``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from foldflow.projections.models import metadata
from foldflow.security import postgres_connect_args
from foldflow.settings import Settings

config = context.config
url: str = config.get_main_option("sqlalchemy.url") or ""
connect_args = config.attributes.get("connect_args", {})
if not url:
    _settings = Settings()
    url, connect_args = _settings.database_url, postgres_connect_args(_settings)


def run_offline() -> None:
    """Emit SQL to stdout (``--sql``)."""
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through a live connection."""
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
