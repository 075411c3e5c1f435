"""PostgreSQL uptime store: the batch flush (the hottest write) and every uptime view.

The flush appends (migration 0005 says why): the batch, pre-aggregated in Python, is COPYed
into ``uptime_deltas`` under one flush number, and the deltas of devices that do not exist are
deleted again and reported, in the same transaction. :func:`merge_uptime`, run in the
background by the server (and before a user is deleted), moves the deltas into
``uptime_buckets`` with one upsert. Every read goes through the ``uptime_current`` view, which
adds the pending deltas to the merged buckets, so a read right after a flush sees it whole.

Standalone flushes and merges commit with ``synchronous_commit = off``: a server crash may lose
the last flush (about one flush interval of uptime), never corrupt anything, which the design
accepts for uptime (a lost merge leaves its deltas pending: it is one transaction); a unit of
work keeps the server's setting since other writes share its commit.

Aggregations sum in SQL by exact ``bucket_start`` and fold into calendar periods in Python with
:func:`grass.domain.periods.period_start`, the one definition every backend follows
(``date_trunc(unit, ts, tz)`` differs in the repeated hour of a DST fall-back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

import attrs

from grass.domain.addresses import canonical
from grass.domain.pages import (
    DEFAULT_PAGE_SIZE,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from grass.domain.periods import EpochTotal, Period, PeriodTotal, period_start, zone
from grass.domain.uptime import UptimeBucket, UptimeDelta, UptimeFlushResult, UptimeStats
from grass.ids import is_uuid
from grass.postgres.migrate import LOCK_CLASS
from grass.postgres.pool import Connection, Database, Record
from grass.storage.postgres.scope import Scope

__all__ = [
    "DELETED_USERS_LOCK",
    "PgUptimeStore",
    "fold_periods",
    "merge_pending",
    "merge_uptime",
    "time_filter",
]

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
_STATS = (
    "coalesce(sum(seconds), 0) AS seconds, coalesce(sum(rtt_count), 0) AS rtt_count, "
    "coalesce(sum(rtt_sum_ms), 0) AS rtt_sum_ms, coalesce(max(rtt_max_ms), 0) AS rtt_max_ms, "
    "coalesce(sum(reconnects), 0) AS reconnects"
)
_BUCKET = (
    "device_id::text AS device_id, user_id, host(ip) AS ip, bucket_start, seconds, rtt_count, "
    "rtt_sum_ms, rtt_max_ms, reconnects"
)

_Key = tuple[dt.datetime, str, str, str]


def _is_ip(value: str) -> bool:
    return canonical(value) is not None


def _stats(row: Record) -> UptimeStats:
    return UptimeStats(
        seconds=int(row["seconds"]),
        rtt_count=int(row["rtt_count"]),
        rtt_sum_ms=int(row["rtt_sum_ms"]),
        rtt_max_ms=int(row["rtt_max_ms"]),
        reconnects=int(row["reconnects"]),
    )


def _bucket(row: Record) -> UptimeBucket:
    return UptimeBucket(
        device_id=row["device_id"],
        user_id=row["user_id"],
        ip=row["ip"],
        bucket_start=row["bucket_start"],
        stats=_stats(row),
    )


def time_filter(
    column: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    conditions: list[str],
    args: list[object],
) -> None:
    """Append the half-open ``since <= column < until`` conditions and their arguments."""
    if since is not None:
        args.append(since)
        conditions.append(f"{column} >= ${len(args)}")
    if until is not None:
        args.append(until)
        conditions.append(f"{column} < ${len(args)}")


def fold_periods(
    rows: Iterable[tuple[dt.datetime, int]], period: Period, tz: str
) -> list[PeriodTotal]:
    """Fold (exact time, sum) pairs into calendar periods of ``tz``; non-empty, ascending."""
    tzinfo = zone(tz)
    sums: dict[dt.datetime, int] = {}
    for at, value in rows:
        start = period_start(at, period, tzinfo)
        sums[start] = sums.get(start, 0) + value
    return [PeriodTotal(start=s, value=v) for s, v in sorted(sums.items())]


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


class PgUptimeStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        if not deltas:
            return UptimeFlushResult(applied=0)
        start = _START_RELAXED if self._scope.unit is None else _START_FLUSH

        async def flush(conn: Connection) -> Sequence[Record]:
            number = await conn.fetchval(start, LOCK_CLASS)
            rows = _rows(deltas, number)
            await conn.copy_records_to_table("uptime_deltas", records=rows, columns=_COLUMNS)
            return await conn.fetch(_DROP_UNKNOWN, number)

        dropped = await self._scope.write(flush)
        unknown = frozenset(r["device_id"] for r in dropped if not r["foreign"])
        foreign = frozenset(r["device_id"] for r in dropped if r["foreign"])
        refused = {(r["device_id"], r["user_id"]) for r in dropped}
        applied = sum(1 for d in deltas if (d.device_id, d.user_id) not in refused)
        return UptimeFlushResult(applied=applied, unknown_devices=unknown, foreign_devices=foreign)

    async def list_buckets(
        self,
        bucket_start: dt.datetime,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[UptimeBucket]:
        check_limit(limit)
        args: list[object] = [bucket_start]
        after = ""
        if cursor is not None:
            parts = decode_cursor(cursor, (str, str))
            if None in parts:
                raise InvalidPage("malformed cursor")
            args += parts
            after = 'AND (host(ip) COLLATE "C", device_id::text COLLATE "C") > ($2, $3)'
        args.append(limit + 1)
        query = (
            f"SELECT {_BUCKET} FROM uptime_current WHERE bucket_start = $1 {after} "
            f'ORDER BY host(ip) COLLATE "C", device_id::text COLLATE "C" LIMIT ${len(args)}'
        )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        rows = await self._scope.read_primary(run)
        items = tuple(_bucket(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, encode_cursor((items[-1].ip, items[-1].device_id)) if more else None)

    async def bucket_starts(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[dt.datetime]:
        conditions: list[str] = ["true"]
        args: list[object] = []
        time_filter("bucket_start", since, until, conditions, args)
        query = (
            f"SELECT DISTINCT bucket_start FROM uptime_current WHERE {' AND '.join(conditions)} "
            "ORDER BY bucket_start"
        )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        return [r["bucket_start"] for r in await self._scope.read_primary(run)]

    async def uptime_stats(
        self,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        ip: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UptimeStats:
        rows = await self._grouped(
            None, user_id=user_id, device_id=device_id, ip=ip, since=since, until=until
        )
        return _stats(rows[0])

    async def uptime_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, UptimeStats]:
        rows = await self._grouped("device_id::text", user_id=user_id, since=since, until=until)
        return {r["key"]: _stats(r) for r in rows}

    async def uptime_by_ip(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        rows = await self._grouped("host(ip)", user_id=user_id, since=since, until=until)
        return {r["key"]: _stats(r) for r in rows}

    async def uptime_by_user(
        self,
        user_ids: Collection[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        if not user_ids:
            return {}
        rows = await self._grouped("user_id", user_ids=list(user_ids), since=since, until=until)
        return {r["key"]: _stats(r) for r in rows}

    async def uptime_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]:
        zone(tz)  # an unknown zone fails before any query
        conditions = ["user_id = $1"]
        args: list[object] = [user_id]
        if device_id is not None:
            if not is_uuid(device_id):
                return []
            args.append(device_id)
            conditions.append(f"device_id = ${len(args)}")
        time_filter("bucket_start", since, until, conditions, args)
        query = (
            "SELECT bucket_start, sum(seconds) AS value FROM uptime_current "
            f"WHERE {' AND '.join(conditions)} GROUP BY bucket_start"
        )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        rows = await self._scope.read(run)
        return fold_periods(((r["bucket_start"], int(r["value"])) for r in rows), period, tz)

    async def uptime_by_epoch(self, user_id: str) -> list[EpochTotal]:
        query = (
            "SELECT e.number, sum(b.seconds) AS value FROM uptime_current b "
            "JOIN epochs e ON b.bucket_start >= e.starts_at AND b.bucket_start < e.ends_at "
            "WHERE b.user_id = $1 GROUP BY e.number ORDER BY e.number"
        )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, user_id)

        rows = await self._scope.read(run)
        return [EpochTotal(epoch=int(r["number"]), value=int(r["value"])) for r in rows]

    async def _grouped(
        self,
        key: str | None,
        *,
        user_id: str | None = None,
        user_ids: list[str] | None = None,
        device_id: str | None = None,
        ip: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[Record]:
        conditions: list[str] = ["true"]
        args: list[object] = []
        if (device_id is not None and not is_uuid(device_id)) or (
            ip is not None and not _is_ip(ip)
        ):
            conditions.append("false")  # never stored: no match, as in memory
            device_id = ip = None
        for column, value in (("user_id", user_id), ("device_id", device_id), ("ip", ip)):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        if user_ids is not None:
            args.append(user_ids)
            conditions.append(f"user_id = ANY(${len(args)}::text[])")
        time_filter("bucket_start", since, until, conditions, args)
        where = " AND ".join(conditions)
        if key is None:
            query = f"SELECT {_STATS} FROM uptime_current WHERE {where}"
        else:
            query = (
                f"SELECT {key} AS key, {_STATS} FROM uptime_current WHERE {where} "
                # ORDER BY <number> COLLATE would collate the constant, not the column.
                f'GROUP BY 1 ORDER BY {key} COLLATE "C"'
            )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        return await self._scope.read(run)
