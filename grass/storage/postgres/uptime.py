"""PostgreSQL uptime store: the batch flush (the hottest write) and every uptime view.

The flush pre-aggregates the batch in Python (ON CONFLICT cannot touch one row twice in a
statement), sorts it by the primary key (index pages are then visited in order), COPYs it in
binary into a per-connection temporary table and upserts from there in ONE statement that
also reports devices that do not exist. Standalone flushes commit with
``synchronous_commit = off``: a server crash may lose the last flush (about one flush interval
of uptime), never corrupt anything, which the design accepts for uptime; a unit of work keeps
the server's setting since other writes share its commit.

Aggregations sum in SQL by exact ``bucket_start`` and fold into calendar periods in Python with
:func:`grass.domain.periods.period_start`, the one definition every backend follows
(``date_trunc(unit, ts, tz)`` differs in the repeated hour of a DST fall-back).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Collection, Iterable, Sequence

import attrs

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
from grass.storage.postgres.pool import Connection, Record
from grass.storage.postgres.scope import Scope

__all__ = ["PgUptimeStore", "fold_periods", "time_filter"]

_STAGING = "grass_uptime_flush"
_COLUMNS = (
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
_COLS = ", ".join(_COLUMNS)
# No constraints on the staging table: the model validated every value, and the target's
# CHECKs run once, on the upsert. Temporary, so its rows are never WAL-logged.
_PREPARE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    device_id text, bucket_start timestamptz, user_id text, ip text, seconds integer,
    rtt_count integer, rtt_sum_ms bigint, rtt_max_ms integer, reconnects integer
) ON COMMIT DELETE ROWS;
TRUNCATE pg_temp.grass_uptime_flush
"""
_FLUSH = f"""
INSERT INTO uptime_buckets AS b ({_COLS})
SELECT s.device_id::uuid, s.bucket_start, s.user_id, s.ip::inet, s.seconds, s.rtt_count,
       s.rtt_sum_ms, s.rtt_max_ms, s.reconnects
FROM pg_temp.{_STAGING} s
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = s.device_id::uuid)
ORDER BY 2, 1, 4
ON CONFLICT (bucket_start, device_id, ip) DO UPDATE SET
    user_id    = excluded.user_id,
    seconds    = b.seconds + excluded.seconds,
    rtt_count  = b.rtt_count + excluded.rtt_count,
    rtt_sum_ms = b.rtt_sum_ms + excluded.rtt_sum_ms,
    rtt_max_ms = greatest(b.rtt_max_ms, excluded.rtt_max_ms),
    reconnects = b.reconnects + excluded.reconnects
"""
# Only when the upsert wrote fewer rows than were staged (a device removed meanwhile).
_UNKNOWN = f"""
SELECT DISTINCT s.device_id FROM pg_temp.{_STAGING} s
WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = s.device_id::uuid)
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

_Key = tuple[dt.datetime, str, str]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


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


def _merge(deltas: Sequence[UptimeDelta]) -> list[tuple[object, ...]]:
    merged: dict[_Key, UptimeDelta] = {}
    for d in deltas:
        key = (d.bucket_start, d.device_id, d.ip)
        before = merged.get(key)
        if before is not None:  # rare: a device flushed twice in one batch
            d = attrs.evolve(d, stats=before.stats + d.stats)  # the latest names the owner
        merged[key] = d
    # Ids and IPs travel as text, parsed by the server in C: asyncpg's binary encoders for
    # uuid and inet parse each value in Python first (measured: half the COPY time). The
    # upsert sorts by the primary key itself (SQL sorts faster than Python here).
    return [
        (
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


class PgUptimeStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        if not deltas:
            return UptimeFlushResult(applied=0)
        rows = _merge(deltas)
        relaxed = self._scope.unit is None

        async def flush(conn: Connection) -> Sequence[Record]:
            if relaxed:
                await conn.execute("SET LOCAL synchronous_commit = off;" + _PREPARE)
            else:
                await conn.execute(_PREPARE)
            await conn.copy_records_to_table(_STAGING, records=rows, columns=_COLUMNS)
            status = await conn.execute(_FLUSH)
            if int(status.rsplit(" ", 1)[-1]) == len(rows):
                return []
            return await conn.fetch(_UNKNOWN)

        unknown = frozenset(str(r["device_id"]) for r in await self._scope.write(flush))
        applied = sum(1 for d in deltas if d.device_id not in unknown)
        return UptimeFlushResult(applied=applied, unknown_devices=unknown)

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
            f"SELECT {_BUCKET} FROM uptime_buckets WHERE bucket_start = $1 {after} "
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
            f"SELECT DISTINCT bucket_start FROM uptime_buckets WHERE {' AND '.join(conditions)} "
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
            "SELECT bucket_start, sum(seconds) AS value FROM uptime_buckets "
            f"WHERE {' AND '.join(conditions)} GROUP BY bucket_start"
        )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        rows = await self._scope.read(run)
        return fold_periods(((r["bucket_start"], int(r["value"])) for r in rows), period, tz)

    async def uptime_by_epoch(self, user_id: str) -> list[EpochTotal]:
        query = (
            "SELECT e.number, sum(b.seconds) AS value FROM uptime_buckets b "
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
            query = f"SELECT {_STATS} FROM uptime_buckets WHERE {where}"
        else:
            query = (
                f"SELECT {key} AS key, {_STATS} FROM uptime_buckets WHERE {where} "
                # ORDER BY <number> COLLATE would collate the constant, not the column.
                f'GROUP BY 1 ORDER BY {key} COLLATE "C"'
            )

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        return await self._scope.read(run)
