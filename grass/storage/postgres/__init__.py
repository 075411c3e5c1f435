"""PostgreSQL storage backend: pool, error mapping, migrations and time partitions.

The stores are built on :class:`~grass.storage.postgres.pool.Database`; the schema lives in
``migrations/NNNN_*.sql`` and is applied by :func:`~grass.storage.postgres.migrate.migrate`.
"""

from grass.storage.postgres.errors import (
    ChecksumMismatch,
    MigrationError,
    SchemaTooNew,
    SerializationConflict,
    translate_errors,
)
from grass.storage.postgres.pool import (
    Connection,
    Database,
    Isolation,
    Record,
    RetryPolicy,
    describe_dsn,
    open_postgres,
)

__all__ = [
    "ChecksumMismatch",
    "Connection",
    "Database",
    "Isolation",
    "MigrationError",
    "Record",
    "RetryPolicy",
    "SchemaTooNew",
    "SerializationConflict",
    "describe_dsn",
    "open_postgres",
    "translate_errors",
]
