"""The stores' tables: the migrations in ``migrations/NNNN_name.sql``, owner ``storage``.

Applied by :func:`~grass.storage.postgres.storage.open_postgres_storage` (the storage backend's
factory opens the storage through it) and by ``grass migrate``. The ledger's tables, in the same
database, are another owner's (:mod:`grass.ledger.postgres_schema`).
"""

from __future__ import annotations

from importlib import resources

from grass.postgres.migrate import Migration, load_migrations, migrate
from grass.postgres.pool import Database

__all__ = ["OWNER", "migrate_storage_tables", "storage_migrations"]

OWNER = "storage"


def storage_migrations() -> list[Migration]:
    return load_migrations(resources.files("grass.storage.postgres").joinpath("migrations"))


async def migrate_storage_tables(db: Database) -> list[int]:
    """Apply the stores' pending migrations; the versions applied."""
    return await migrate(db, OWNER, storage_migrations())
