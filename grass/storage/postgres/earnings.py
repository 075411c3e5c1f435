"""PostgreSQL earnings store: the idempotent batch insert (its statements are
:mod:`grass.storage.postgres.earnings_insert`) and every earnings view.

Device ids and addresses travel as text and are cast by the server (asyncpg's binary encoder
for inet parses each value in Python).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from grass.domain.earnings import (
    EarningEntry,
    EarningsInsertResult,
    EarningSource,
    EarningsTotals,
    ReferralEarning,
)
from grass.domain.pages import (
    DEFAULT_PAGE_SIZE,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    from_micros,
    micros,
)
from grass.domain.periods import EpochTotal, Period, PeriodTotal, zone
from grass.ids import is_uuid
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.earnings_insert import conflict, insert_batch, record
from grass.storage.postgres.rows import fold_periods, time_filter
from grass.storage.postgres.scope import Scope

__all__ = ["ENTRY_SELECT", "PgEarningsStore", "entry_of"]

ENTRY_SELECT = (
    "e.id, e.user_id, e.source, e.amount, e.idempotency_key, e.accrued_at, e.created_at, "
    "e.device_id::text AS device_id, host(e.ip) AS ip, e.bucket_start, e.referee_id, "
    "e.referral_level"
)
_STORED = f"""
SELECT {ENTRY_SELECT} FROM earnings_keys k
JOIN earnings e ON e.id = k.entry_id AND e.accrued_at = k.accrued_at
WHERE k.idempotency_key = ANY($1::text[])
"""


def entry_of(row: Record) -> EarningEntry:
    level = row["referral_level"]
    return EarningEntry(
        id=row["id"],
        user_id=row["user_id"],
        source=EarningSource(row["source"]),
        amount=int(row["amount"]),
        idempotency_key=row["idempotency_key"],
        accrued_at=row["accrued_at"],
        created_at=row["created_at"],
        device_id=row["device_id"],
        ip=row["ip"],
        bucket_start=row["bucket_start"],
        referee_id=row["referee_id"],
        referral_level=None if level is None else int(level),
    )


class PgEarningsStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def insert_earnings(self, entries: Sequence[EarningEntry]) -> EarningsInsertResult:
        # Repeats inside the batch are settled here: only the first of a key reaches SQL.
        first: dict[str, EarningEntry] = {}
        repeats: list[EarningEntry] = []
        for entry in entries:
            seen = first.get(entry.idempotency_key)
            if seen is None:
                first[entry.idempotency_key] = entry
            elif seen.content() != entry.content():
                raise conflict(entry.idempotency_key)
            else:
                repeats.append(entry)
        if not first:
            return EarningsInsertResult(inserted=0)
        records = [record(e) for e in first.values()]

        async def insert(conn: Connection) -> set[str]:
            return await insert_batch(conn, first, records)

        taken = await self._scope.write(insert)
        repeated = {id(e) for e in repeats}
        duplicates = tuple(
            e.idempotency_key for e in entries if e.idempotency_key in taken or id(e) in repeated
        )
        return EarningsInsertResult(inserted=len(entries) - len(duplicates), duplicates=duplicates)

    async def find_earning(self, idempotency_key: str) -> EarningEntry | None:
        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(_STORED, [idempotency_key])

        rows = await self._scope.read_primary(run)
        return entry_of(rows[0]) if rows else None

    async def list_earnings(
        self,
        user_id: str,
        *,
        source: EarningSource | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        check_limit(limit)
        conditions = ["e.user_id = $1"]
        args: list[object] = [user_id]
        _filters(conditions, args, source=source, since=since, until=until)
        if cursor is not None:
            at, last_id = decode_cursor(cursor, (int, str))
            if at is None or last_id is None:
                raise InvalidPage("malformed cursor")
            assert isinstance(at, int)
            args += [from_micros(at), last_id]
            n = len(args)
            conditions.append(f'(e.accrued_at, e.id COLLATE "C") < (${n - 1}, ${n})')
        args.append(limit + 1)
        query = (
            f"SELECT {ENTRY_SELECT} FROM earnings e WHERE {' AND '.join(conditions)} "
            f'ORDER BY e.accrued_at DESC, e.id COLLATE "C" DESC LIMIT ${len(args)}'
        )
        rows = await self._fetch(query, args)
        items = tuple(entry_of(r) for r in rows[:limit])
        more = len(rows) > limit
        last = items[-1] if items else None
        next_cursor = encode_cursor((micros(last.accrued_at), last.id)) if more and last else None
        return Page(items, next_cursor)

    async def list_bucket_earnings(
        self,
        bucket_start: dt.datetime,
        *,
        source: EarningSource | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        check_limit(limit)
        conditions = ["e.bucket_start = $1"]
        args: list[object] = [bucket_start]
        _filters(conditions, args, source=source)
        if cursor is not None:
            (last_id,) = decode_cursor(cursor, (str,))
            if last_id is None:
                raise InvalidPage("malformed cursor")
            args.append(last_id)
            conditions.append(f'e.id COLLATE "C" > ${len(args)}')
        args.append(limit + 1)
        query = (
            f"SELECT {ENTRY_SELECT} FROM earnings e WHERE {' AND '.join(conditions)} "
            f'ORDER BY e.id COLLATE "C" LIMIT ${len(args)}'
        )
        rows = await self._fetch(query, args, primary=True)
        items = tuple(entry_of(r) for r in rows[:limit])
        more = len(rows) > limit
        return Page(items, encode_cursor((items[-1].id,)) if more and items else None)

    async def earnings_totals(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> EarningsTotals:
        conditions = ["true"]
        args: list[object] = []
        _filters(conditions, args, user_id=user_id, since=since, until=until)
        query = (
            "SELECT e.source, sum(e.amount) AS value FROM earnings e "
            f"WHERE {' AND '.join(conditions)} GROUP BY e.source"
        )
        by_source = dict.fromkeys(EarningSource, 0)
        for row in await self._fetch(query, args):
            by_source[EarningSource(row["source"])] = int(row["value"])
        return EarningsTotals(total=sum(by_source.values()), by_source=by_source)

    async def count_earning_users(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> int:
        conditions = ["true"]
        args: list[object] = []
        _filters(conditions, args, since=since, until=until)
        query = (
            f"SELECT count(DISTINCT e.user_id) AS n FROM earnings e "
            f"WHERE {' AND '.join(conditions)}"
        )
        return int((await self._fetch(query, args))[0]["n"])

    async def earnings_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: EarningSource | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]:
        zone(tz)  # an unknown zone fails before any query
        if device_id is not None and not is_uuid(device_id):
            return []
        conditions = ["e.user_id = $1"]
        args: list[object] = [user_id]
        _filters(conditions, args, source=source, since=since, until=until)
        if device_id is not None:
            args.append(device_id)
            conditions.append(f"e.device_id = ${len(args)}")
        query = (
            "SELECT e.accrued_at, sum(e.amount) AS value FROM earnings e "
            f"WHERE {' AND '.join(conditions)} GROUP BY e.accrued_at"
        )
        rows = await self._fetch(query, args)
        return fold_periods(((r["accrued_at"], int(r["value"])) for r in rows), period, tz)

    async def earnings_by_epoch(self, user_id: str) -> list[EpochTotal]:
        query = (
            "SELECT p.number, sum(e.amount) AS value FROM earnings e "
            "JOIN epochs p ON e.accrued_at >= p.starts_at AND e.accrued_at < p.ends_at "
            "WHERE e.user_id = $1 GROUP BY p.number ORDER BY p.number"
        )
        rows = await self._fetch(query, [user_id])
        return [EpochTotal(epoch=int(r["number"]), value=int(r["value"])) for r in rows]

    async def earnings_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        return await self._sum_by("e.device_id::text", user_id, since, until)

    async def earnings_by_ip(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        return await self._sum_by("host(e.ip)", user_id, since, until)

    async def referral_earnings(
        self,
        referrer_id: str,
        *,
        referee_ids: Collection[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[ReferralEarning]:
        conditions = ["e.user_id = $1"]
        args: list[object] = [referrer_id]
        _filters(conditions, args, source=EarningSource.REFERRAL, since=since, until=until)
        if referee_ids is not None:
            args.append(list(referee_ids))
            conditions.append(f"e.referee_id = ANY(${len(args)}::text[])")
        query = (
            "SELECT e.referral_level AS level, e.referee_id, sum(e.amount) AS value "
            f"FROM earnings e WHERE {' AND '.join(conditions)} "
            'GROUP BY 1, 2 ORDER BY 1, e.referee_id COLLATE "C"'
        )
        return [
            ReferralEarning(
                referee_id=r["referee_id"], level=int(r["level"]), amount=int(r["value"])
            )
            for r in await self._fetch(query, args)
        ]

    async def _sum_by(
        self, key: str, user_id: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> dict[str, int]:
        conditions = ["e.user_id = $1", f"{key} IS NOT NULL"]
        args: list[object] = [user_id]
        _filters(conditions, args, since=since, until=until)
        query = (
            f"SELECT {key} AS key, sum(e.amount) AS value FROM earnings e "
            # ORDER BY <number> COLLATE would collate the constant, not the column.
            f'WHERE {" AND ".join(conditions)} GROUP BY 1 ORDER BY {key} COLLATE "C"'
        )
        return {r["key"]: int(r["value"]) for r in await self._fetch(query, args)}

    async def _fetch(
        self, query: str, args: Sequence[object], *, primary: bool = False
    ) -> list[Record]:
        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(query, *args)

        if primary:
            return await self._scope.read_primary(run)
        return await self._scope.read(run)


def _filters(
    conditions: list[str],
    args: list[object],
    *,
    user_id: str | None = None,
    source: EarningSource | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> None:
    if user_id is not None:
        args.append(user_id)
        conditions.append(f"e.user_id = ${len(args)}")
    if source is not None:
        args.append(source.value)
        conditions.append(f"e.source = ${len(args)}")
    time_filter("e.accrued_at", since, until, conditions, args)
