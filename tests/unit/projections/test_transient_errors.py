"""Which database errors the projector waits out (retry) and which stop it (a bug)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc

from projections.projector import _is_transient


@pytest.mark.parametrize("orig", [
    psycopg.errors.AdminShutdown(), psycopg.errors.CannotConnectNow(),
    psycopg.errors.DeadlockDetected(), psycopg.errors.SerializationFailure(),
    psycopg.errors.LockNotAvailable(), psycopg.OperationalError("connection refused"),
    psycopg.InterfaceError("connection closed"),
])
def test_outages_and_contention_are_retried(orig: Exception) -> None:
    assert _is_transient(exc.OperationalError("SELECT 1", {}, orig))


@pytest.mark.parametrize("error", [
    exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()),
    exc.ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable()),
    ValueError("not a database error"),
])
def test_bugs_are_not_retried(error: Exception) -> None:
    assert not _is_transient(error)
