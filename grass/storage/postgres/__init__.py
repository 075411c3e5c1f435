"""PostgreSQL storage backend: pool, error mapping, migrations, time partitions and stores.

The stores are built on :class:`~grass.storage.postgres.pool.Database`; the schema lives in
``migrations/NNNN_*.sql`` and is applied by :func:`~grass.storage.postgres.migrate.migrate`.
:func:`open_postgres_storage` opens all of it and yields a :class:`PostgresStorage`.
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
from grass.storage.postgres.storage import (
    PostgresStorage,
    PostgresStores,
    open_postgres_storage,
)

__all__ = [
    "ChecksumMismatch",
    "Connection",
    "Database",
    "Isolation",
    "MigrationError",
    "PostgresStorage",
    "PostgresStores",
    "Record",
    "RetryPolicy",
    "SchemaTooNew",
    "SerializationConflict",
    "describe_dsn",
    "open_postgres",
    "open_postgres_storage",
    "translate_errors",
]
