"""What the PostgreSQL benchmarks share: a throwaway migrated schema, bulk users, a timer."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from grass.ledger.postgres_schema import migrate_ledger_tables
from grass.postgres.connection import Connection
from grass.postgres.pool import Database, open_postgres
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.schema import migrate_storage_tables

DEFAULT_DSN = os.environ.get("GRASS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_USER_COLUMNS = [
    "id",
    "email",
    "referral_code",
    "password_hash",
    "password_changed_at",
    "created_at",
]


@asynccontextmanager
async def throwaway_database(dsn: str, month: dt.datetime) -> AsyncIterator[Database]:
    """A new schema, migrated, with the partition of ``month``; dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with open_postgres(dsn, min_size=1, max_size=2) as admin:
        await admin.run(lambda c: c.execute(f'CREATE SCHEMA "{schema}"'))
        try:
            async with open_postgres(
                dsn, min_size=1, max_size=2, server_settings={"search_path": schema}
            ) as db:
                await migrate_storage_tables(db)
                await migrate_ledger_tables(db)
                await ensure_partitions(db, now=month, months_ahead=0)
                yield db
        finally:
            await admin.run(lambda c: c.execute(f'DROP SCHEMA "{schema}" CASCADE'))


async def load_users(conn: Connection, user_ids: Iterable[str]) -> None:
    at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    records = [
        (u, f"u{i}@bench.test", f"ref{i:06d}", "x", at, at) for i, u in enumerate(sorted(user_ids))
    ]
    await conn.copy_records_to_table("users", columns=_USER_COLUMNS, records=records)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start
