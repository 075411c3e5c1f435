"""PostgreSQL uptime store: the batch flush (the hottest write; its statements and the merge
are :mod:`grass.storage.postgres.uptime_flush`) and every uptime view.

Every read goes through the ``uptime_current`` view, which adds the pending deltas to the
merged buckets, so a read right after a flush sees it whole.

Aggregations sum in SQL by exact ``bucket_start`` and fold into calendar periods in Python with
:func:`grass.domain.periods.period_start`, the one definition every backend follows
(``date_trunc(unit, ts, tz)`` differs in the repeated hour of a DST fall-back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from grass.domain.addresses import canonical
from grass.domain.pages import (
    DEFAULT_PAGE_SIZE,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from grass.domain.periods import EpochTotal, Period, PeriodTotal, zone
from grass.domain.uptime import UptimeBucket, UptimeDelta, UptimeFlushResult, UptimeStats
from grass.ids import is_uuid
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import fold_periods, time_filter
from grass.storage.postgres.scope import Scope
from grass.storage.postgres.uptime_flush import append_deltas

__all__ = ["PgUptimeStore"]

_STATS = (
    "coalesce(sum(seconds), 0) AS seconds, coalesce(sum(rtt_count), 0) AS rtt_count, "
    "coalesce(sum(rtt_sum_ms), 0) AS rtt_sum_ms, coalesce(max(rtt_max_ms), 0) AS rtt_max_ms, "
    "coalesce(sum(reconnects), 0) AS reconnects"
)
_BUCKET = (
    "device_id::text AS device_id, user_id, host(ip) AS ip, bucket_start, seconds, rtt_count, "
    "rtt_sum_ms, rtt_max_ms, reconnects"
)


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


class PgUptimeStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        if not deltas:
            return UptimeFlushResult(applied=0)
        relaxed = self._scope.unit is None

        async def flush(conn: Connection) -> Sequence[Record]:
            return await append_deltas(conn, deltas, relaxed=relaxed)

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
