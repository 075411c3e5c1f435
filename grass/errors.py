"""The root of every error grass raises on purpose.

Each layer derives its errors from one of these classes, so the API layer can turn any of them
into a reply without knowing which layer raised it::

    GrassError                      500  internal         (a bug: never shown in detail)
    ├── ConfigError                 -    invalid_config   (exit 2 before opening anything)
    ├── StartupError                -    startup_failed   (exit 1: a port in use, a bad certificate)
    ├── InvalidInput                400  invalid_input    (malformed request or message)
    │   └── ValidationFailed        422  validation_failed (details per field)
    ├── Unauthenticated             401  unauthenticated
    ├── Forbidden                   403  forbidden
    ├── NotFound                    404  not_found
    ├── Conflict                    409  conflict
    ├── RateLimited                 429  rate_limited     (details: retry_after seconds)
    ├── Unavailable                 503  unavailable      (a backend cannot be reached)
    ├── StorageError                -    the stores' errors (every backend raises these, below)
    ├── LedgerError                      grass.ledger.abc:   LedgerConflict, AnchorFailed, ...
    └── ProtocolError               -    grass.nodes.protocol:  the node protocol's errors

The storage errors live here (not in grass.storage) so that every backend and the shared
PostgreSQL package (grass.postgres) raise them without importing the stores' interfaces::

    StorageError
    ├── StorageNotFound      also a NotFound     (404)
    ├── StorageConflict      also a Conflict     (409): a unique key is taken
    │   └── OwnedByAnother   the row belongs to another user (a row refused, below)
    ├── RowRefused           a row's own content was refused, not the backend's state:
    │   │                    a batch writer drops that row and writes the others
    │   │                    (grass.storage.batches)
    │   ├── IntegrityViolation  also a Conflict (409): a reference or check constraint failed
    │   └── InvalidValue     also a ValidationFailed (422): a value the backend cannot store
    │                        (text UTF-8 cannot encode or holding NUL, a number out of range)
    ├── StorageUnavailable   also an Unavailable (503): the backend cannot be reached
    └── TransactionAborted   (500): a unit of work used after one of its operations failed

Layer errors combine a layer base with a kind, e.g.
``class StorageConflict(StorageError, Conflict)``, so they map to the kind's status and code.

Two mappings live here and nowhere else: :func:`http_error` (status + body
``{"error": {"code", "message", "details"}}``) and :func:`ws_error` (close code or error message
for a node connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


class GrassError(Exception):
    """Base of every deliberate grass error."""

    code: str = "internal"
    http_status: int = 500
    #: WebSocket close code for a node connection; None means "send an error message, stay open".
    ws_close_code: int | None = 1011

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class ConfigError(GrassError):
    code = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration:\n{lines}", details={"problems": problems})


class StartupError(GrassError):
    """A server or backend could not start (port in use, bad certificate): one line for the
    operator, and the process exits 1."""

    code = "startup_failed"


class InvalidInput(GrassError):
    code = "invalid_input"
    http_status = 400
    ws_close_code: int | None = 1008


class ValidationFailed(InvalidInput):
    code = "validation_failed"
    http_status = 422


class Unauthenticated(GrassError):
    code = "unauthenticated"
    http_status = 401
    ws_close_code: int | None = 1008


class Forbidden(GrassError):
    code = "forbidden"
    http_status = 403
    ws_close_code: int | None = 1008


class NotFound(GrassError):
    code = "not_found"
    http_status = 404
    ws_close_code: int | None = 1008


class Conflict(GrassError):
    code = "conflict"
    http_status = 409
    ws_close_code: int | None = 1008


class RateLimited(GrassError):
    code = "rate_limited"
    http_status = 429
    ws_close_code: int | None = 1008

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after": round(retry_after, 3)})
        self.retry_after = retry_after


class Unavailable(GrassError):
    code = "unavailable"
    http_status = 503
    ws_close_code: int | None = 1011


class StorageError(GrassError):
    """Base of the storage errors (the tree above), whatever the backend."""


class StorageNotFound(StorageError, NotFound):
    code = "not_found"


class StorageConflict(StorageError, Conflict):
    code = "conflict"


class RowRefused(StorageError):
    """A row's content broke a rule of the store: writing it again can never succeed, and
    the other rows of its batch are not at fault."""


class OwnedByAnother(StorageConflict, RowRefused):
    code = "conflict"


class IntegrityViolation(RowRefused, Conflict):
    code = "integrity_violation"


class InvalidValue(RowRefused, ValidationFailed):
    """Every backend refuses what PostgreSQL cannot store: text that UTF-8 cannot encode (a
    lone surrogate) or that holds NUL, numbers out of a column's range. Messages never quote
    the value."""

    code = "invalid_value"


class StorageUnavailable(StorageError, Unavailable):
    code = "unavailable"


class TransactionAborted(StorageError):
    """A unit of work was used after one of its operations failed.

    As in PostgreSQL, the first failure dooms the whole unit of work: later operations raise this,
    and leaving the block normally raises it too, after rolling everything back.
    """

    code = "transaction_aborted"


class LedgerError(GrassError):
    """Base of the ledger layer's errors (see grass.ledger.abc)."""


class ProtocolError(GrassError):
    """Base of the node protocol's errors (see grass.nodes.protocol)."""

    code = "protocol_error"
    ws_close_code: int | None = 1002


@attrs.frozen
class HttpError:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = attrs.field(factory=dict)


def http_error(exc: BaseException) -> HttpError:
    """The HTTP reply for any exception; unexpected ones become an opaque 500."""
    if not isinstance(exc, GrassError):
        return HttpError(
            500, {"error": {"code": "internal", "message": "internal error", "details": {}}}
        )
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    message = exc.message if exc.http_status < 500 or exc.code != "internal" else "internal error"
    body = {"error": {"code": exc.code, "message": message, "details": exc.details}}
    return HttpError(exc.http_status, body, headers)


@attrs.frozen
class WsError:
    """What to do with a node connection after an error.

    ``close_code`` set: close the socket with it and ``reason``. Otherwise send ``message``
    (a JSON-ready dict) and keep the connection.
    """

    close_code: int | None
    reason: str
    message: dict[str, Any] | None


def ws_error(exc: BaseException) -> WsError:
    if not isinstance(exc, GrassError):
        return WsError(1011, "internal error", None)
    if exc.ws_close_code is None:
        return WsError(None, exc.message, {"error": {"code": exc.code, "message": exc.message}})
    # A close reason must fit a control frame (123 bytes of UTF-8).
    reason = exc.message.encode()[:123].decode(errors="ignore")
    return WsError(exc.ws_close_code, reason, None)


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group wraps, through nested groups of one; the group itself when it
    holds more. A nursery wraps what its body raised: callers catch StorageConflict or
    ConnectionRejected, not a group holding one."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return group if isinstance(inner, BaseExceptionGroup) else inner
