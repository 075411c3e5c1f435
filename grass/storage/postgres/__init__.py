"""PostgreSQL storage backend: the stores, their schema and the time partitions.

The stores are built on :class:`~grass.postgres.pool.Database` (the shared package
:mod:`grass.postgres`); the schema lives in ``migrations/NNNN_*.sql``, applied by
:func:`~grass.postgres.migrate.migrate` as the ``storage`` owner.
:func:`open_postgres_storage` opens all of it and yields a :class:`PostgresStorage`.
"""

from grass.storage.postgres.storage import (
    PostgresStorage,
    PostgresStores,
    open_postgres_storage,
)

__all__ = [
    "PostgresStorage",
    "PostgresStores",
    "open_postgres_storage",
]
