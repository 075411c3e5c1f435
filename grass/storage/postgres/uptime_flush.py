"""The uptime flush and merge on PostgreSQL (the hottest writes).

The flush appends (migration 0005 says why): the batch, pre-aggregated in Python, is COPYed
into ``uptime_deltas`` under one flush number, and the deltas of devices that do not exist are
deleted again and reported, in the same transaction. :func:`merge_uptime`, run in the
background by the server (and before a user is deleted), moves the deltas into
``uptime_buckets`` with one upsert. Reads (:mod:`grass.storage.postgres.uptime`) add what is
still pending.

Standalone flushes and merges commit with ``synchronous_commit = off``: a server crash may lose
the last flush (about one flush interval of uptime), never corrupt anything, which the design
accepts for uptime (a lost merge leaves its deltas pending: it is one transaction); a unit of
work keeps the server's setting since other writes share its commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs

from grass.domain.uptime import UptimeDelta
from grass.postgres.connection import Connection, Record
from grass.postgres.migrate import LOCK_CLASS
from grass.postgres.pool import Database

__all__ = ["DELETED_USERS_LOCK", "append_deltas", "merge_pending", "merge_uptime"]

_COLUMNS = (
    "flush",
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
# Flushes share this lock and an account deletion takes it alone (DELETED_USERS_LOCK), so
# no flush checks a device against a snapshot from before the deletion and commits after it:
# that left uptime of a deleted user, which no close of its bucket could pay.
_FLUSH_LOCK = "pg_advisory_xact_lock_shared($1, hashtext(current_schema() || 'uptime users'))"
DELETED_USERS_LOCK = (
    "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || 'uptime users'))"
)
_START_FLUSH = f"SELECT nextval('uptime_flush_seq') FROM {_FLUSH_LOCK}"
_START_RELAXED = (
    f"SELECT nextval('uptime_flush_seq') FROM {_FLUSH_LOCK},"
    " set_config('synchronous_commit', 'off', true)"
)
# The devices table is small next to a flush's work; only the rows of this flush are checked.
# A delta counts only for the device's owner: one naming another user is dropped as well
# (``foreign``), so it can neither credit that user nor move the owner's bucket to them.
_DROP_UNKNOWN = """
WITH dropped AS (
    DELETE FROM uptime_deltas d
    WHERE d.flush = $1 AND NOT EXISTS
        (SELECT 1 FROM devices v WHERE v.id = d.device_id AND v.user_id = d.user_id)
    RETURNING d.device_id, d.user_id
)
SELECT DISTINCT x.device_id::text AS device_id, x.user_id, v.id IS NOT NULL AS foreign
FROM dropped x LEFT JOIN devices v ON v.id = x.device_id
"""
# One merge at a time per schema (a second one would only wait on the first one's row locks);
# the rows of flushes committing meanwhile are not visible to the DELETE and stay pending.
_MERGE_LOCK = "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema() || 'uptime'))"
_MERGE = """
WITH moved AS (DELETE FROM uptime_deltas RETURNING *)
INSERT INTO uptime_buckets AS b (device_id, bucket_start, ip, user_id, seconds, rtt_count,
                                 rtt_sum_ms, rtt_max_ms, reconnects)
SELECT device_id, bucket_start, ip::inet, (array_agg(user_id ORDER BY flush DESC))[1],
       sum(seconds), sum(rtt_count), sum(rtt_sum_ms), max(rtt_max_ms), sum(reconnects)
FROM moved
GROUP BY 1, 2, 3
ORDER BY 2, 1, 3
ON CONFLICT (bucket_start, device_id, ip) DO UPDATE SET
    user_id    = excluded.user_id,
    seconds    = b.seconds + excluded.seconds,
    rtt_count  = b.rtt_count + excluded.rtt_count,
    rtt_sum_ms = b.rtt_sum_ms + excluded.rtt_sum_ms,
    rtt_max_ms = greatest(b.rtt_max_ms, excluded.rtt_max_ms),
    reconnects = b.reconnects + excluded.reconnects
"""

_Key = tuple[dt.datetime, str, str, str]


def _rows(deltas: Sequence[UptimeDelta], flush: int) -> list[tuple[object, ...]]:
    merged: dict[_Key, UptimeDelta] = {}
    for d in deltas:
        # The user too: the flush keeps only the owner's deltas (a stray one never adds in).
        key = (d.bucket_start, d.device_id, d.ip, d.user_id)
        before = merged.get(key)
        if before is not None:  # rare: a device flushed twice in one batch
            d = attrs.evolve(d, stats=before.stats + d.stats)
        merged[key] = d
    return [
        (
            flush,
            d.device_id,
            d.bucket_start,
            d.user_id,
            d.ip,
            d.stats.seconds,
            d.stats.rtt_count,
            d.stats.rtt_sum_ms,
            d.stats.rtt_max_ms,
            d.stats.reconnects,
        )
        for d in merged.values()
    ]


async def merge_pending(conn: Connection) -> str:
    """Move every committed delta into ``uptime_buckets`` (in the caller's transaction);
    return the statement's status (``INSERT 0 <buckets written>``)."""
    return await conn.execute(_MERGE)


async def merge_uptime(db: Database) -> int:
    """One background merge; returns the number of buckets written (0 when another instance
    is merging, or nothing is pending)."""

    async def merge(conn: Connection) -> int:
        if not await conn.fetchval(_MERGE_LOCK, LOCK_CLASS):
            return 0
        await conn.execute("SET LOCAL synchronous_commit = off; SET LOCAL work_mem = '64MB'")
        status = await merge_pending(conn)
        return int(status.rsplit(" ", 1)[-1])

    return await db.run(merge)


async def append_deltas(
    conn: Connection, deltas: Sequence[UptimeDelta], *, relaxed: bool
) -> Sequence[Record]:
    """One flush in the caller's transaction (``relaxed``: its own, committed without waiting
    for the disk); returns the deltas dropped, one row per (device, user), ``foreign`` when
    the device exists under another user."""
    number = await conn.fetchval(_START_RELAXED if relaxed else _START_FLUSH, LOCK_CLASS)
    rows = _rows(deltas, number)
    await conn.copy_records_to_table("uptime_deltas", records=rows, columns=_COLUMNS)
    return await conn.fetch(_DROP_UNKNOWN, number)
