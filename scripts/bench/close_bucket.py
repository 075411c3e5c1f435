"""Benchmark: closing one uptime bucket of N devices on PostgreSQL, beside a plain COPY.

Builds a throwaway schema with N/4 users (each but the first referred by another, links
active), N scored devices of mixed types on N/2 IPs, and one bucket of uptime (one row per
device), then times in one run:

- ``copy``   binary COPY of N earnings rows (what the close writes for uptime) into an empty,
             unindexed copy of ``earnings``: the floor for moving the bytes;
- ``tick``   one ``BucketCloser.tick()`` ten minutes after the bucket ended, the
             path the running server takes: the job lock, uncredited closes, the due buckets
             (the window's uptime against the closes), then for the bucket: read its lines with
             types and scores, compute shares, referral credits and milestones, write entries,
             the lines' prices and the close record (set-based, one transaction), hand the
             credits to the ledger (the memory ledger, the default), mark the close credited;
             then the report of late uptime past the window and the epochs. The split below
             comes from the closer's step hook;
- ``next``   an hour later, the same closer's tick for the next bucket (the same devices
             online again): the steady state of a running closer, which sweeps its window
             instead of reading it whole.

With ``--history H`` the H hours before the bucket hold every device's uptime too, closed and
credited (referrals long qualified): a started closer's first tick looks at its whole correction
window (three days by default), as a running one does once per bucket length.

Usage: python scripts/bench/close_bucket.py [--dsn postgresql://...] [--devices 100000]
       [--history 72]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
import uuid

import trio
from _pg import DEFAULT_DSN, load_users, throwaway_database

from grass.config import Config
from grass.ids import short_id
from grass.ledger.memory import open_memory_ledger
from grass.postgres.connection import Connection
from grass.postgres.pool import Database
from grass.services.closer import BucketCloser
from grass.services.epochs import EpochService
from grass.services.scores import ScoreService
from grass.storage.postgres.job_lock import PgJobLock
from grass.storage.postgres.storage import PostgresStorage

TYPES = ("extension", "extension", "desktop", "community", "android")


async def setup(db: Database, count: int, bucket: dt.datetime, history: int = 0) -> int:
    rng = random.Random(1)
    users = sorted(short_id() for _ in range(max(1, count // 4)))
    devices = [
        (uuid.UUID(int=rng.getrandbits(128), version=4), users[i % len(users)])
        for i in range(count)
    ]
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(max(1, count // 2))]
    seconds = [rng.randint(600, 3600) for _ in devices]
    component = '{"availability": 90, "stability": 100, "latency": 100, "ip_quality": 90}'

    async def load(conn: Connection) -> None:
        await load_users(conn, users)
        await conn.copy_records_to_table(
            "referrals",
            columns=["referee_id", "level", "referrer_id", "status", "code", "created_at"],
            records=[
                (u, 1, users[i // 2], "qualified" if history else "active", "code", bucket)
                for i, u in enumerate(users)
                if i > 0
            ],
        )
        await conn.copy_records_to_table(
            "devices",
            columns=["id", "user_id", "type", "ip", "status", "first_seen", "last_seen"],
            records=[
                (d, u, TYPES[i % len(TYPES)], ips[i % len(ips)], "online", bucket, bucket)
                for i, (d, u) in enumerate(devices)
            ],
        )
        # jsonb has no binary COPY encoder: the scores (50 to 100) are set in SQL.
        await conn.execute(
            "UPDATE devices SET score = 50 + abs(hashtext(id::text)) % 51,"
            " score_components = $1::jsonb, score_at = $2",
            component,
            bucket,
        )
        await conn.copy_records_to_table(
            "uptime_buckets",
            columns=["device_id", "bucket_start", "user_id", "ip", "seconds"],
            records=[
                (d, bucket, u, ips[i % len(ips)], seconds[i]) for i, (d, u) in enumerate(devices)
            ],
        )
        # History: the hours before, every device online, every bucket closed and credited.
        for hour in range(1, history + 1):
            past = bucket - dt.timedelta(hours=hour)
            await conn.copy_records_to_table(
                "uptime_buckets",
                columns=["device_id", "bucket_start", "user_id", "ip", "seconds"],
                records=[
                    (d, past, u, ips[i % len(ips)], seconds[i]) for i, (d, u) in enumerate(devices)
                ],
            )
            await conn.execute(
                "INSERT INTO bucket_closes VALUES ($1, 0, $2, true, $1)", past, sum(seconds)
            )
        await conn.execute("CREATE TABLE copy_baseline (LIKE earnings)")
        await conn.execute("ANALYZE")

    await db.run(load)
    return sum(seconds)


async def bench(dsn: str, count: int, history: int = 0) -> None:
    bucket = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    bucket -= dt.timedelta(hours=2)
    config = Config()
    async with throwaway_database(dsn, bucket) as db:
        total_seconds = await setup(db, count, bucket, history)
        storage = PostgresStorage(db)
        rows = [
            (short_id(), r["user_id"], "uptime", 1000, f"baseline:{i}", bucket, bucket,
             r["device_id"], r["ip"], bucket, None, None)
            for i, r in enumerate(
                await db.read(
                    lambda c: c.fetch(
                        "SELECT user_id, device_id, ip FROM uptime_buckets"
                        " WHERE bucket_start = $1",
                        bucket,
                    )
                )
            )
        ]  # fmt: skip

        copy_started = time.perf_counter()
        await db.run(lambda conn: conn.copy_records_to_table("copy_baseline", records=rows))
        copy = time.perf_counter() - copy_started

        marks: dict[str, float] = {}

        async def mark(name: str, _: dt.datetime) -> None:
            marks[name] = time.perf_counter()

        async with open_memory_ledger() as ledger:
            moment = [bucket + dt.timedelta(hours=1, minutes=10)]

            def clock() -> dt.datetime:
                return moment[0]

            scores = ScoreService(storage, lambda: config, clock)
            epochs = EpochService(storage, ledger, lambda: config)
            closer = BucketCloser(
                storage, ledger, scores, epochs, PgJobLock(db), lambda: config, clock,
                step_hook=mark,
            )  # fmt: skip
            started = time.perf_counter()
            assert await closer.tick()
            tick = time.perf_counter() - started
            first_marks = dict(marks)
            # An hour on, the same closer (running: it sweeps the window instead of reading
            # it whole) closes the next bucket, the same devices online again.
            following = bucket + dt.timedelta(hours=1)
            await db.run(
                lambda c: c.execute(
                    "INSERT INTO uptime_buckets (device_id, bucket_start, user_id, ip, seconds)"
                    " SELECT device_id, $2, user_id, ip, seconds FROM uptime_buckets"
                    " WHERE bucket_start = $1",
                    bucket,
                    following,
                )
            )
            moment[0] += dt.timedelta(hours=1)
            next_started = time.perf_counter()
            assert await closer.tick()
            next_tick = time.perf_counter() - next_started
            next_close = await storage.payouts.get_close(following)
            assert next_close is not None
            assert next_close.credited
        entries, paid = await db.read(
            lambda c: c.fetchrow("SELECT count(*), sum(amount) FROM earnings")
        )
        assert entries >= count, "every device is paid"
        close = await storage.payouts.get_close(bucket)
        assert close is not None
        assert (close.credited, close.seconds) == (True, total_seconds)
        assert len(await storage.payouts.frozen_lines(bucket)) == count

    print(
        f"PostgreSQL bucket close, {count} devices, {history} h of closed history"
        f" ({entries} entries, {paid} micro-points over the two buckets)"
    )
    print(f"  {'copy (baseline)':36s} {copy:7.3f} s   1.00 x copy")
    for title, at, took, steps in (
        ("first tick of a started closer", started, tick, first_marks),
        ("next tick, an hour on", next_started, next_tick, marks),
    ):
        print(f"  {title:36s} {took:7.3f} s   {took / copy:5.2f} x copy")
        parts = [
            ("  due, read, compute, write", at, steps["recorded"]),
            ("  referral statuses", steps["recorded"], steps["statuses"]),
            ("  ledger (memory)", steps["statuses"], steps["ledger"]),
            ("  mark credited", steps["ledger"], steps["credited"]),
            ("  window report, epochs, lock", steps["credited"], at + took),
        ]
        for name, a, b in parts:
            print(f"  {name:36s} {b - a:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="hours of closed buckets before the one closed (a started closer scans them all)",
    )
    args = parser.parse_args()
    trio.run(bench, args.dsn, args.devices, args.history)


if __name__ == "__main__":
    main()
