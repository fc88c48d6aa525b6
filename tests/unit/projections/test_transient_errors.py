"""Which database errors the projector waits out (retry), works around (a refused value)
and which stop it (a bug)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc

from foldflow.projections.dberrors import is_refusal, is_transient


@pytest.mark.parametrize("orig", [
    psycopg.errors.AdminShutdown(), psycopg.errors.CannotConnectNow(),
    psycopg.errors.DeadlockDetected(), psycopg.errors.SerializationFailure(),
    psycopg.errors.LockNotAvailable(), psycopg.OperationalError("connection refused"),
    psycopg.InterfaceError("connection closed"), psycopg.errors.QueryCanceled(),
    psycopg.errors.DiskFull(),
])
def test_outages_and_contention_are_retried(orig: Exception) -> None:
    error = exc.OperationalError("SELECT 1", {}, orig)
    assert is_transient(error)
    assert not is_refusal(error)


@pytest.mark.parametrize("error", [
    exc.DataError("INSERT", {}, psycopg.errors.InvalidTextRepresentation()),  # NaN in jsonb
    exc.DataError("INSERT", {}, psycopg.errors.UntranslatableCharacter()),  # \u0000 in jsonb
    exc.DataError("INSERT", {}, psycopg.errors.StringDataRightTruncation()),
    exc.DataError("INSERT", {}, psycopg.DataError("text fields cannot contain NUL")),
    exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()),
    # class 54 is an OperationalError in psycopg, but no retry makes it fit
    exc.OperationalError("INSERT", {}, psycopg.errors.ProgramLimitExceeded()),
    exc.OperationalError("INSERT", {}, psycopg.errors.StatementTooComplex()),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    ValueError("year 60000 is out of range"),
    RecursionError(),
    exc.StatementError("bad parameter", "INSERT", {}, ValueError("Out of range float")),
])
def test_refused_values_are_worked_around(error: Exception) -> None:
    assert is_refusal(error)
    assert not is_transient(error)


@pytest.mark.parametrize("error", [
    exc.ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable()),
    exc.ProgrammingError("SELECT", {}, psycopg.errors.InsufficientPrivilege()),
    TypeError("a bug"),
    KeyError("a bug"),
])
def test_bugs_stop_the_projector(error: Exception) -> None:
    assert not is_transient(error)
    assert not is_refusal(error)
