"""PostgreSQL access for the gateway: a bounded engine and timed calls that answer 503.

Queries are synchronous SQLAlchemy calls run on a worker thread; :func:`call_db` gives
each a deadline (and the engine a ``statement_timeout``), so a slow or absent database
becomes a clear ``503 postgresql unavailable`` instead of a hung request.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc

from foldflow.gateway.errors import DependencyUnavailable
from foldflow.projections.db import connection
from foldflow.settings import Settings

__all__ = ["call_db", "make_engine"]

P = ParamSpec("P")
T = TypeVar("T")

#: Errors that mean "the database is not answering", not "the query is wrong".
_OUTAGES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def make_engine(database: Settings | str, *, timeout_s: float) -> Engine:
    """An engine whose connects, pool waits and statements all give up after ``timeout_s``;
    given settings, with their TLS options (``FOLDFLOW_DATABASE_SSL*``)."""
    url, tls = connection(database)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout_s,
        connect_args={
            "connect_timeout": max(1, math.ceil(timeout_s)),
            "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            "application_name": "foldflow-gateway",
            **tls,
        },
    )


async def call_db(timeout_s: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` on a thread; 503 if it fails to reach PostgreSQL in time."""
    try:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
    except TimeoutError as exc:
        raise DependencyUnavailable(
            "postgresql", f"the database did not answer within {timeout_s:g}s"
        ) from exc
    except _OUTAGES as exc:
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        raise DependencyUnavailable(
            "postgresql", f"the database is unavailable ({type(cause).__name__})"
        ) from exc
