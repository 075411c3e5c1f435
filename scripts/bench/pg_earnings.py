"""Benchmark: inserting N earnings entries into PostgreSQL, beside a plain COPY.

Builds a throwaway schema (migrated, partitioned, with the entries' users), then times, in one
run:

- ``copy``      binary COPY of the same N rows into an empty, unindexed copy of ``earnings``:
                the floor for moving the bytes;
- ``insert``    ``PgEarningsStore.insert_earnings`` on N new entries, everything included
                (idempotency keys claimed in ``earnings_keys``, entries written to the month's
                partition, indexes, commit);
- ``re-insert`` the same N entries again: a retried batch, every key a duplicate, nothing
                written.

Usage: python scripts/bench/pg_earnings.py [--dsn postgresql://...] [--rows 100000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import trio

from grass.domain.earnings import EarningEntry, EarningSource
from grass.ids import short_id
from grass.storage.postgres import Connection, Database, open_postgres
from grass.storage.postgres.earnings import PgEarningsStore
from grass.storage.postgres.migrate import migrate
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.scope import Scope


def make_entries(count: int, hour: dt.datetime, seed: int = 1) -> list[EarningEntry]:
    rng = random.Random(seed)
    users = [short_id() for _ in range(max(1, count // 10))]
    return [
        EarningEntry(
            id=short_id(),
            user_id=users[i % len(users)],
            source=EarningSource.UPTIME,
            amount=rng.randint(1, 2_000_000),
            idempotency_key=f"uptime:{hour:%Y%m%d%H}:{i}",
            accrued_at=hour,
            created_at=hour,
            device_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            bucket_start=hour,
        )
        for i in range(count)
    ]


def as_row(e: EarningEntry) -> tuple[object, ...]:
    return (
        e.id,
        e.user_id,
        e.source.value,
        e.amount,
        e.idempotency_key,
        e.accrued_at,
        e.created_at,
        uuid.UUID(e.device_id) if e.device_id else None,
        None,
        e.bucket_start,
        None,
        None,
    )


async def setup(db: Database, entries: Sequence[EarningEntry]) -> None:
    await migrate(db)
    await ensure_partitions(db, now=entries[0].accrued_at, months_ahead=0)
    at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    users = sorted({e.user_id for e in entries})

    async def load(conn: Connection) -> None:
        await conn.copy_records_to_table(
            "users",
            columns=[
                "id",
                "email",
                "referral_code",
                "password_hash",
                "password_changed_at",
                "created_at",
            ],
            records=[
                (u, f"u{i}@bench.test", f"ref{i:06d}", "x", at, at) for i, u in enumerate(users)
            ],
        )
        await conn.execute("CREATE TABLE copy_baseline (LIKE earnings)")
        await conn.execute("ANALYZE")

    await db.run(load)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def bench(dsn: str, count: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    entries = make_entries(count, hour)
    async with open_postgres(dsn, min_size=1, max_size=2) as admin:
        await admin.run(lambda c: c.execute(f'CREATE SCHEMA "{schema}"'))
        try:
            async with open_postgres(
                dsn, min_size=1, max_size=2, server_settings={"search_path": schema}
            ) as db:
                await setup(db, entries)
                store = PgEarningsStore(Scope(db))
                rows = [as_row(e) for e in entries]

                async def copy() -> None:
                    await db.run(
                        lambda conn: conn.copy_records_to_table("copy_baseline", records=rows)
                    )

                async def insert() -> None:
                    result = await store.insert_earnings(entries)
                    assert result.inserted == count

                async def reinsert() -> None:
                    result = await store.insert_earnings(entries)
                    assert len(result.duplicates) == count

                results = {
                    "copy (baseline, empty table)": await timed(copy),
                    "insert, new keys": await timed(insert),
                    "re-insert, all duplicates": await timed(reinsert),
                }
                total = await db.read(lambda c: c.fetchval("SELECT sum(amount) FROM earnings"))
                assert total == sum(e.amount for e in entries), "lost or doubled"
        finally:
            await admin.run(lambda c: c.execute(f'DROP SCHEMA "{schema}" CASCADE'))

    baseline = results["copy (baseline, empty table)"]
    print(f"PostgreSQL earnings insert, {count} entries")
    for name, elapsed in results.items():
        print(f"  {name:30s} {elapsed:7.3f} s   {elapsed / baseline:5.2f} x copy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "GRASS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    trio.run(bench, args.dsn, args.rows)


if __name__ == "__main__":
    main()
