"""Storage interfaces: one Protocol per aggregate, a unit of work, and the storage errors.

Error tree (every backend raises these and nothing else; driver errors are mapped in one
place per backend)::

    StorageError (grass.errors)
    ├── StorageNotFound      also a NotFound     (404)
    ├── StorageConflict      also a Conflict     (409): a unique key is taken
    ├── IntegrityViolation   also a Conflict     (409): a reference or check constraint failed
    └── StorageUnavailable   also an Unavailable (503): the backend cannot be reached
"""

from __future__ import annotations

from grass.errors import Conflict, NotFound, StorageError, Unavailable


class StorageNotFound(StorageError, NotFound):
    code = "not_found"


class StorageConflict(StorageError, Conflict):
    code = "conflict"


class IntegrityViolation(StorageError, Conflict):
    code = "integrity_violation"


class StorageUnavailable(StorageError, Unavailable):
    code = "unavailable"
