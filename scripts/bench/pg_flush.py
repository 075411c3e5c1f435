"""Benchmark: the uptime flush of N device deltas into PostgreSQL, beside a plain COPY.

Builds a throwaway schema (migrated, partitioned, with N devices), then times, in one run:

- ``copy``   binary COPY of the same N rows into an empty unindexed table with the buckets'
             column types: the floor for moving the bytes;
- ``flush``  ``PgUptimeStore.add_uptime`` on N ``UptimeDelta`` values, everything included
             (pre-aggregation in Python, the COPY into ``uptime_deltas``, the check for unknown
             devices, the commit with ``synchronous_commit = off``): first into empty buckets,
             then twice into the same buckets (the steady state, one delta per device and flush
             interval), each followed by
- ``merge``  ``merge_uptime``, the background step folding those deltas into ``uptime_buckets``
             (all inserts the first time, all updates after): not on the flush's path, but the
             database pays for it once per flush interval.

The month's partition is created by ``ensure_partitions``; with ``--fillfactor F`` it is
altered to keep that share of each page free-for-updates first (HOT updates touch no index).

Usage: python scripts/bench/pg_flush.py [--dsn postgresql://...] [--rows 100000] [--fillfactor 50]
Target (architecture §12): a flush of 100 000 deltas in at most 0.5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import random
import uuid
from collections.abc import Sequence

import trio
from _pg import DEFAULT_DSN, load_users, throwaway_database, timed

from grass.domain.uptime import UptimeDelta, UptimeStats
from grass.ids import short_id
from grass.postgres.connection import Connection
from grass.postgres.pool import Database
from grass.storage.postgres.partitions import partition_name
from grass.storage.postgres.scope import Scope
from grass.storage.postgres.uptime import PgUptimeStore
from grass.storage.postgres.uptime_flush import merge_uptime


def make_deltas(count: int, hour: dt.datetime, seed: int = 1) -> list[UptimeDelta]:
    rng = random.Random(seed)
    users = [short_id() for _ in range(max(1, count // 10))]
    deltas: list[UptimeDelta] = []
    for i in range(count):
        rtt_count = rng.randint(1, 3)
        deltas.append(
            UptimeDelta(
                device_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                user_id=users[i % len(users)],
                ip=str(ipaddress.IPv4Address(rng.getrandbits(32))),
                bucket_start=hour,
                stats=UptimeStats(
                    seconds=rng.randint(20, 120),
                    rtt_count=rtt_count,
                    rtt_sum_ms=rtt_count * rng.randint(10, 300),
                    rtt_max_ms=rng.randint(10, 400),
                    reconnects=rng.randint(0, 1),
                ),
            )
        )
    return deltas


def as_row(d: UptimeDelta) -> tuple[object, ...]:
    s = d.stats
    return (
        d.device_id,
        d.bucket_start,
        d.user_id,
        d.ip,
        s.seconds,
        s.rtt_count,
        s.rtt_sum_ms,
        s.rtt_max_ms,
        s.reconnects,
    )


async def setup(db: Database, deltas: Sequence[UptimeDelta], fillfactor: int | None) -> None:
    at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

    async def load(conn: Connection) -> None:
        if fillfactor is not None:
            name = partition_name("uptime_buckets", deltas[0].bucket_start)
            await conn.execute(f'ALTER TABLE "{name}" SET (fillfactor = {fillfactor})')
        await load_users(conn, {d.user_id for d in deltas})
        await conn.copy_records_to_table(
            "devices",
            columns=["id", "user_id", "type", "first_seen", "last_seen"],
            records=[(d.device_id, d.user_id, "extension", at, at) for d in deltas],
        )
        await conn.execute("CREATE TABLE copy_baseline (LIKE uptime_buckets)")
        await conn.execute("ANALYZE")

    await db.run(load)


async def bench(dsn: str, count: int, fillfactor: int | None) -> None:
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    deltas = make_deltas(count, hour)
    async with throwaway_database(dsn, hour) as db:
        await setup(db, deltas, fillfactor)
        store = PgUptimeStore(Scope(db))

        async def copy() -> None:
            rows = [as_row(d) for d in deltas]
            await db.run(lambda conn: conn.copy_records_to_table("copy_baseline", records=rows))

        async def flush() -> None:
            result = await store.add_uptime(deltas)
            assert result.applied == count
            assert not result.unknown_devices

        async def merge() -> None:
            assert await merge_uptime(db) == count

        await flush()  # warm-up: statement cache (then emptied)
        await merge()
        await db.run(lambda conn: conn.execute("TRUNCATE uptime_buckets, uptime_deltas"))
        async with db.connection() as conn:  # VACUUM runs outside a transaction
            await conn.execute("VACUUM ANALYZE uptime_deltas")
        results = {"copy (baseline, empty table)": await timed(copy)}
        for name in ("new buckets", "adding to buckets", "adding again"):
            results[f"flush, {name}"] = await timed(flush)
            results[f"  merge (background), {name}"] = await timed(merge)
        seconds = await db.read(lambda c: c.fetchval("SELECT sum(seconds) FROM uptime_current"))
        assert seconds == 3 * sum(d.stats.seconds for d in deltas), "lost or doubled"

    baseline = results["copy (baseline, empty table)"]
    fill = f"fillfactor {fillfactor}" if fillfactor is not None else "default fillfactor"
    print(f"PostgreSQL uptime flush, {count} device deltas ({fill})")
    for name, elapsed in results.items():
        print(f"  {name:38s} {elapsed:7.3f} s   {elapsed / baseline:5.2f} x copy")
    worst = max(v for k, v in results.items() if k.startswith("flush"))
    verdict = "OK" if worst <= 0.5 else "OVER"
    print(f"  target: every flush <= 0.5 s: {verdict} (worst {worst:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=DEFAULT_DSN,
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fillfactor", type=int, default=None)
    args = parser.parse_args()
    trio.run(bench, args.dsn, args.rows, args.fillfactor)


if __name__ == "__main__":
    main()
