"""What a database error means for the projector: wait it out, work around it, or stop.

- **Transient** (:func:`is_transient`): PostgreSQL away or restarting, a deadlock, a lock
  or statement timeout, a full disk: the same batch is retried until it commits.
- **Refusal** (:func:`is_refusal`): PostgreSQL (or the driver, or the fold) refused a
  *value*: bad JSON text, NUL, a lone surrogate, a string over its column, a number out of
  range, a unique id taken. Retrying cannot help; the batch is applied event by event and
  the refused event is stored in a form that fits (:mod:`foldflow.projections.store`).
- Anything else (a missing table, a permission, a bug) stops the projector.

Classified by SQLSTATE class (PostgreSQL's appendix A); connection failures carry none.
"""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, StatementError

__all__ = ["is_refusal", "is_transient"]

#: connection exception, transaction rollback (serialization, deadlock), insufficient
#: resources, object not in prerequisite state (lock not available), operator
#: intervention (shutdown, statement timeout), system error (I/O)
_TRANSIENT = frozenset({"08", "40", "53", "55", "57", "58"})
#: data exception, integrity constraint violation, program limit exceeded
_REFUSED = frozenset({"22", "23", "54"})


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def is_transient(exc: BaseException) -> bool:
    """PostgreSQL unavailable or contended: retry the same work later."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc.orig, psycopg.InterfaceError):
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state[:2] in _TRANSIENT
    return isinstance(exc.orig, psycopg.OperationalError)


def is_refusal(exc: BaseException) -> bool:
    """A value that PostgreSQL, the driver or the fold cannot take (see the module doc)."""
    if isinstance(exc, DBAPIError):
        if is_transient(exc):
            return False
        state = _sqlstate(exc)
        if state is not None:
            return state[:2] in _REFUSED
        return isinstance(exc.orig, psycopg.DataError)  # the driver's own: NUL in text
    if isinstance(exc, StatementError):  # a parameter the driver could not even send
        return exc.orig is not None and is_refusal(exc.orig)
    return isinstance(exc, ValueError | OverflowError | RecursionError)
