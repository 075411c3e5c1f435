"""Benchmark: the uptime flush of N device deltas into PostgreSQL, beside a plain COPY.

Builds a throwaway schema (migrated, partitioned, with N devices), then times, in one run:

- ``copy``    COPY of the N rows into an empty unindexed table: the floor for moving the bytes;
- ``unnest``  the flush as one INSERT ... SELECT FROM unnest($1::uuid[], ...) ... ON CONFLICT
              (device_id, bucket_start) DO UPDATE adding seconds: first into empty buckets
              (all inserts), then again into the same buckets (all updates);
- ``copy+upsert`` the same through COPY into a temp table then INSERT ... ON CONFLICT.

Usage: python scripts/bench/pg_flush.py [--dsn postgresql://...] [--rows 100000]
Target (DESIGN §12): a flush of 100 000 deltas in at most 0.5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import trio

from grass.ids import short_id
from grass.storage.postgres import Connection, Database, open_postgres
from grass.storage.postgres.migrate import migrate
from grass.storage.postgres.partitions import ensure_partitions

COLUMNS = (
    "device_id",
    "bucket_start",
    "user_id",
    "ip",
    "seconds",
    "rtt_count",
    "rtt_sum_ms",
    "rtt_max_ms",
    "reconnects",
)
_ADD = """
ON CONFLICT (device_id, bucket_start) DO UPDATE SET
    user_id    = excluded.user_id,
    ip         = excluded.ip,
    seconds    = least(3600, b.seconds + excluded.seconds),
    rtt_count  = b.rtt_count + excluded.rtt_count,
    rtt_sum_ms = b.rtt_sum_ms + excluded.rtt_sum_ms,
    rtt_max_ms = greatest(b.rtt_max_ms, excluded.rtt_max_ms),
    reconnects = b.reconnects + excluded.reconnects
"""
UNNEST_FLUSH = f"""
INSERT INTO uptime_buckets AS b ({", ".join(COLUMNS)})
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::inet[], $5::int[],
                     $6::int[], $7::bigint[], $8::int[], $9::int[])
{_ADD}
"""
TEMP_FLUSH = f"""
INSERT INTO uptime_buckets AS b ({", ".join(COLUMNS)})
SELECT {", ".join(COLUMNS)} FROM flush_deltas
{_ADD}
"""

Row = tuple[uuid.UUID, dt.datetime, str, ipaddress.IPv4Address, int, int, int, int, int]


def make_rows(count: int, hour: dt.datetime, seed: int = 1) -> tuple[list[Row], list[str]]:
    rng = random.Random(seed)
    users = [short_id() for _ in range(max(1, count // 10))]
    rows: list[Row] = []
    for i in range(count):
        rtt_count = rng.randint(1, 3)
        rows.append(
            (
                uuid.UUID(int=rng.getrandbits(128), version=4),
                hour,
                users[i % len(users)],
                ipaddress.IPv4Address(rng.getrandbits(32)),
                rng.randint(20, 120),
                rtt_count,
                rtt_count * rng.randint(10, 300),
                rng.randint(10, 400),
                rng.randint(0, 1),
            )
        )
    return rows, users


async def setup(db: Database, rows: Sequence[Row], users: Sequence[str]) -> None:
    await migrate(db)
    await ensure_partitions(db, now=rows[0][1], months_ahead=0)
    at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

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
        await conn.copy_records_to_table(
            "devices",
            columns=["id", "user_id", "type", "first_seen", "last_seen"],
            records=[(r[0], r[2], "extension", at, at) for r in rows],
        )
        await conn.execute("CREATE TABLE copy_baseline (LIKE uptime_buckets)")
        await conn.execute("ANALYZE")

    await db.run(load)


async def timed(db: Database, fn: Callable[[Connection], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await db.run(fn)
    return time.perf_counter() - start


async def bench(dsn: str, count: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rows, users = make_rows(count, hour)
    columns = [list(col) for col in zip(*rows, strict=True)]
    async with open_postgres(dsn, min_size=1, max_size=2) as admin:
        await admin.run(lambda c: c.execute(f'CREATE SCHEMA "{schema}"'))
        try:
            async with open_postgres(
                dsn, min_size=1, max_size=2, server_settings={"search_path": schema}
            ) as db:
                await setup(db, rows, users)

                async def copy(conn: Connection) -> None:
                    await conn.copy_records_to_table("copy_baseline", records=rows)

                async def unnest(conn: Connection) -> None:
                    await conn.execute(UNNEST_FLUSH, *columns)

                async def copy_upsert(conn: Connection) -> None:
                    await conn.execute(
                        "CREATE TEMP TABLE flush_deltas (LIKE uptime_buckets) ON COMMIT DROP"
                    )
                    await conn.copy_records_to_table("flush_deltas", records=rows)
                    await conn.execute(TEMP_FLUSH)

                results = {
                    "copy (baseline, empty table)": await timed(db, copy),
                    "unnest flush, new buckets": await timed(db, unnest),
                    "unnest flush, adding to buckets": await timed(db, unnest),
                    "copy+upsert flush, adding": await timed(db, copy_upsert),
                }
                seconds = await db.read(
                    lambda c: c.fetchval("SELECT sum(seconds) FROM uptime_buckets")
                )
                assert seconds == 3 * sum(r[4] for r in rows), "the flush lost or doubled deltas"
        finally:
            await admin.run(lambda c: c.execute(f'DROP SCHEMA "{schema}" CASCADE'))

    baseline = results["copy (baseline, empty table)"]
    print(f"PostgreSQL uptime flush, {count} device deltas")
    for name, elapsed in results.items():
        print(f"  {name:34s} {elapsed:7.3f} s   {elapsed / baseline:5.2f} x copy")
    worst = max(v for k, v in results.items() if k.startswith("unnest"))
    verdict = "OK" if worst <= 0.5 else "OVER"
    print(f"  target: unnest flush <= 0.5 s: {verdict} (worst {worst:.3f} s)")


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
