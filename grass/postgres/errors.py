"""The one place where PostgreSQL driver errors become storage errors.

asyncpg (reached through triopg and trio-asyncio) raises ``PostgresError`` subclasses carrying
a SQLSTATE, ``InterfaceError`` for a connection it already knows is closed, and ``OSError`` /
``TimeoutError`` when the socket fails. :func:`translate_errors` turns them into::

    StorageConflict          23505 unique_violation, 23P01 exclusion_violation
    └── SerializationConflict 40001 serialization_failure, 40P01 deadlock_detected (retryable)
    IntegrityViolation       23503 foreign key, 23514 check, 23502 not null, 23001 restrict
    InvalidValue             22021 NUL or bytes that are not UTF-8 in text, 22P05 untranslatable
                             character, 22001 too long, 22003 out of range; and the driver
                             failing to encode a value: text UTF-8 cannot encode
                             (UnicodeEncodeError, wrapped in the driver's DataError except in
                             COPY), a number out of its column's range (OverflowError, for an
                             argument or an array element wrapped in DataError, raw in COPY;
                             the server's own overflow is 22003, NumericValueOutOfRangeError)
    StorageUnavailable       class 08 (connection), 53 (resources: too many connections, disk
                             full, out of memory), 57P01-57P03 (shutdown, cannot connect now),
                             57014 (statement timeout), OSError, TimeoutError, and the
                             driver's "connection is closed" / "pool is closing",
                             InternalClientError (a connection in a broken state)
    MigrationError           raised by grass.postgres.migrate, never mapped from a driver
    ├── SchemaTooNew
    └── ChecksumMismatch

Anything else (a syntax error, a bad cast, a division by zero) is a bug in our SQL: it
propagates unchanged, and the API layer turns it into an opaque 500.

Messages and details never quote row values: PostgreSQL's ``DETAIL`` (``Key (email)=(...)``)
can contain user data, so only the constraint, table and column names are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import triopg.exceptions as pg

from grass.errors import (
    GrassError,
    IntegrityViolation,
    InvalidValue,
    StorageConflict,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "ChecksumMismatch",
    "MigrationError",
    "SchemaTooNew",
    "SerializationConflict",
    "storage_error",
    "translate_errors",
]


class SerializationConflict(StorageConflict):
    """Concurrent transactions collided; running the unit of work again may succeed."""

    code = "conflict"


class MigrationError(StorageError):
    code = "migration_error"


class SchemaTooNew(MigrationError):
    code = "schema_too_new"


class ChecksumMismatch(MigrationError):
    code = "migration_checksum_mismatch"


_CONFLICT = {"23505": "unique constraint", "23P01": "exclusion constraint"}
_INTEGRITY = {
    "23503": "foreign key constraint",
    "23514": "check constraint",
    "23502": "not-null constraint",
    "23001": "restrict constraint",
}
_RETRYABLE = {"40001": "serialization failure", "40P01": "deadlock detected"}
#: What each data exception says about the value, in words that never quote it (the driver's
#: own message does: "invalid input for query argument $4: ['4\\udfff'] ...").
_VALUES = {
    "22001": "a value too long for its column",
    "22003": "a number out of its column's range",
    "22021": "text holding NUL or bytes that are not UTF-8",
    "22P05": "text the database cannot represent",
}
_UNAVAILABLE_STATES = {"57P01", "57P02", "57P03", "57014"}
_UNAVAILABLE_CLASSES = {"08", "53"}


def _names(exc: BaseException) -> dict[str, Any]:
    names = {
        "sqlstate": getattr(exc, "sqlstate", None),
        "constraint": getattr(exc, "constraint_name", None),
        "table": getattr(exc, "table_name", None),
        "column": getattr(exc, "column_name", None),
    }
    return {key: value for key, value in names.items() if value}


def _reason(exc: BaseException) -> str:
    # The first line of a server message is written by PostgreSQL itself and never holds row
    # values (those go to DETAIL); socket errors describe the address only.
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def storage_error(
    exc: BaseException, *, target: str, connecting: bool = False
) -> GrassError | None:
    """The storage error for a driver exception, or None when it is not a storage concern.

    ``target`` is ``host:port/database`` (never the password); ``connecting`` says the error
    happened while opening a connection, which makes the message say so.
    """
    if isinstance(exc, GrassError):
        return None
    state = getattr(exc, "sqlstate", None) if isinstance(exc, pg.PostgresError) else None
    details = _names(exc)
    subject = details.get("constraint") or details.get("column") or details.get("table") or "?"
    if state in _CONFLICT:
        return StorageConflict(f"{_CONFLICT[state]} {subject} violated", details=details)
    if state in _INTEGRITY:
        return IntegrityViolation(f"{_INTEGRITY[state]} {subject} violated", details=details)
    refused_value = _refused_value(exc, state)
    if refused_value is not None:
        return InvalidValue(f"cannot store {refused_value}", details=details)
    if state in _RETRYABLE:
        return SerializationConflict(
            f"transaction aborted: {_RETRYABLE[state]}", details={**details, "retryable": True}
        )
    unavailable = (
        # Refused logins and unknown databases are outages of this backend too, at start.
        (connecting and isinstance(exc, pg.PostgresError))
        or state in _UNAVAILABLE_STATES
        or (state is not None and state[:2] in _UNAVAILABLE_CLASSES)
        or isinstance(exc, OSError | TimeoutError)
        # Other InterfaceErrors are misuse of the driver (a bug), not an outage.
        or (isinstance(exc, pg.InterfaceError) and "clos" in str(exc))
        # The protocol's state machine is broken, typically by a server message that arrived
        # on an idle connection (its termination): the connection is unusable.
        or isinstance(exc, pg.InternalClientError)
    )
    if unavailable:
        verb = "cannot connect to" if connecting else "lost connection to"
        details["target"] = target
        return StorageUnavailable(f"{verb} PostgreSQL at {target}: {_reason(exc)}", details=details)
    return None


def _refused_value(exc: BaseException, state: str | None) -> str | None:
    """What is wrong with the value behind a data error, or None for another error."""
    # The driver wraps what failed to encode an argument in its DataError (COPY does not).
    cause = exc.__cause__ if isinstance(exc, pg.DataError) and exc.__cause__ else exc
    if isinstance(cause, UnicodeEncodeError):
        return "text that UTF-8 cannot encode (a lone surrogate)"
    if isinstance(cause, OverflowError):
        return "a number out of its column's range"
    if cause is not exc:
        return None  # an argument of the wrong type: a bug in our code
    return _VALUES.get(state) if state is not None else None


@contextmanager
def translate_errors(*, target: str, connecting: bool = False) -> Iterator[None]:
    """Re-raise driver errors met inside the block as storage errors (``from`` the original)."""
    try:
        yield
    except Exception as exc:
        mapped = storage_error(exc, target=target, connecting=connecting)
        if mapped is None:
            raise
        raise mapped from exc
