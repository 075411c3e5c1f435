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
import random
import uuid
from collections.abc import Sequence

import trio
from _pg import DEFAULT_DSN, load_users, throwaway_database, timed

from grass.domain.earnings import EarningEntry, EarningSource
from grass.ids import short_id
from grass.postgres.connection import Connection
from grass.postgres.pool import Database
from grass.storage.postgres.earnings import PgEarningsStore
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
    async def load(conn: Connection) -> None:
        await load_users(conn, {e.user_id for e in entries})
        await conn.execute("CREATE TABLE copy_baseline (LIKE earnings)")
        await conn.execute("ANALYZE")

    await db.run(load)


async def bench(dsn: str, count: int) -> None:
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    entries = make_entries(count, hour)
    async with throwaway_database(dsn, hour) as db:
        await setup(db, entries)
        store = PgEarningsStore(Scope(db))
        rows = [as_row(e) for e in entries]

        async def copy() -> None:
            await db.run(lambda conn: conn.copy_records_to_table("copy_baseline", records=rows))

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

    baseline = results["copy (baseline, empty table)"]
    print(f"PostgreSQL earnings insert, {count} entries")
    for name, elapsed in results.items():
        print(f"  {name:30s} {elapsed:7.3f} s   {elapsed / baseline:5.2f} x copy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=DEFAULT_DSN,
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    trio.run(bench, args.dsn, args.rows)


if __name__ == "__main__":
    main()
