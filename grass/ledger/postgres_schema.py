"""The ledger's tables: the migrations in ``postgres_migrations/NNNN_name.sql``, owner ``ledger``.

They hold the PostgreSQL journal and anchor (:mod:`grass.ledger.postgres`) and the web3 outbox
(:mod:`grass.ledger.web3.outbox`), in the store's database. No ledger table references a table
of the stores (``user_id`` is plain text), so the two owners' migrations may run in either
order; the factories run the stores' first (opening the store), then the ledger's (opening a
ledger on that store: ``grass.backends.ledger``), and ``grass migrate`` does the same.
"""

from __future__ import annotations

from importlib import resources

from grass.postgres.migrate import Migration, load_migrations, migrate
from grass.postgres.pool import Database

__all__ = ["OWNER", "ledger_migrations", "migrate_ledger_tables"]

OWNER = "ledger"


def ledger_migrations() -> list[Migration]:
    return load_migrations(resources.files("grass.ledger").joinpath("postgres_migrations"))


async def migrate_ledger_tables(db: Database) -> list[int]:
    """Apply the ledger's pending migrations; the versions applied."""
    return await migrate(db, OWNER, ledger_migrations())
