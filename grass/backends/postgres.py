"""The PostgreSQL storage backend's factory: the pool, the stores' tables, and the maintenance
loops it owns (next months' partitions, folding uptime deltas), in a nursery of its own. The
ledger's tables in the same database are created by the ledger factory (``prepare_ledger``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from grass import logs
from grass.backends.bundle import StoreBackend
from grass.config import Config
from grass.errors import StorageError, StorageUnavailable
from grass.ledger.postgres import PostgresAnchor, PostgresJournal
from grass.ledger.postgres_schema import migrate_ledger_tables
from grass.postgres.pool import Database
from grass.storage.postgres.job_lock import PgJobLock
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.storage import PostgresStorage, open_postgres_storage
from grass.storage.postgres.uptime_flush import merge_uptime

if TYPE_CHECKING:
    from grass.ledger.web3 import Outbox

log = logs.get("grass.backends")

PARTITION_CHECK_INTERVAL = 6 * 3600.0


def postgres_store(storage: PostgresStorage) -> StoreBackend:
    """The bundle around an open PostgreSQL storage (no maintenance: see open_postgres_store)."""
    db = storage.db

    def new_outbox() -> Outbox:
        from grass.ledger.web3 import PostgresOutbox

        return PostgresOutbox(db)

    return StoreBackend(
        name="postgres",
        storage=storage,
        journal=PostgresJournal(db),
        job_lock=PgJobLock(db),
        new_outbox=new_outbox,
        anchor=PostgresAnchor(db),
        prepare_ledger=lambda: migrate_ledger_tables(db),
        persistent=True,
        checks={"postgres": db.ping},
    )


@asynccontextmanager
async def open_postgres_store(
    config: Config, *, pool_size: int | None = None, maintain: bool = True
) -> AsyncIterator[StoreBackend]:
    """The configured PostgreSQL store; ``maintain``: run its maintenance loops meanwhile (a
    server does; a one-off command does not). ``pool_size``: at most that many connections."""
    settings = config.storage
    async with open_postgres_storage(
        settings.postgres_dsn.reveal(),
        replica_dsn=settings.postgres_replica_dsn.reveal() or None,
        min_size=min(settings.pool_min_size, pool_size or settings.pool_min_size),
        max_size=pool_size or settings.pool_max_size,
    ) as storage:
        if not maintain:
            yield postgres_store(storage)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_partitions_ahead, storage.db)
            nursery.start_soon(merge_uptime_deltas, storage.db, config.node.uptime_flush_interval)
            yield postgres_store(storage)
            nursery.cancel_scope.cancel()


async def keep_partitions_ahead(db: Database) -> None:
    """Months roll over while a server runs: keep the next partitions created ahead of time."""
    while True:
        await trio.sleep(PARTITION_CHECK_INTERVAL)
        try:
            created = await ensure_partitions(db)
        except StorageUnavailable as exc:
            log.warning("partition check failed; retrying later", error=str(exc))
            continue
        if created:
            log.info("partitions created", partitions=created)


async def merge_uptime_deltas(db: Database, interval: float) -> None:
    """Uptime flushes append deltas (grass.storage.postgres.uptime_flush): fold them into buckets
    once per flush interval, so that reads, which add what is pending, stay cheap."""
    while True:
        await trio.sleep(interval)
        try:
            await merge_uptime(db)
        except StorageError as exc:  # the deltas stay pending, and reads still count them
            log.warning("uptime merge failed; retrying later", error=str(exc))
