"""EpochStore on PostgreSQL; an exclusion constraint keeps the ranges from overlapping."""

from __future__ import annotations

import datetime as dt

from grass.domain.epochs import Epoch, EpochStatus, EpochTotals
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.errors import IntegrityViolation
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import after_int, page_of, require
from grass.storage.postgres.scope import Scope

__all__ = ["PgEpochStore"]

_COLUMNS = "number, name, starts_at, ends_at, status, points, uptime_seconds, users"
_ORDER = {EpochStatus.OPEN: 0, EpochStatus.CLOSING: 1, EpochStatus.SETTLED: 2}


def _epoch(row: Record) -> Epoch:
    totals = None
    if row["points"] is not None:
        totals = EpochTotals(
            points=row["points"], uptime_seconds=row["uptime_seconds"], users=row["users"]
        )
    return Epoch(
        number=row["number"],
        name=row["name"],
        start=row["starts_at"],
        end=row["ends_at"],
        status=EpochStatus(row["status"]),
        totals=totals,
    )


def _args(e: Epoch) -> tuple[object, ...]:
    t = e.totals
    return (
        e.number,
        e.name,
        e.start,
        e.end,
        e.status.value,
        None if t is None else t.points,
        None if t is None else t.uptime_seconds,
        None if t is None else t.users,
    )


class PgEpochStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_epoch(self, epoch: Epoch) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO epochs ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *_args(epoch),
            )

        await self._scope.write(insert)

    async def get_epoch(self, number: int) -> Epoch:
        async def find(conn: Connection) -> Record:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM epochs WHERE number = $1", number)
            return require(row, "epoch", number)

        return _epoch(await self._scope.read_primary(find))

    async def epoch_at(self, at: dt.datetime) -> Epoch | None:
        async def find(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM epochs WHERE starts_at <= $1 AND $1 < ends_at", at
            )

        row = await self._scope.read_primary(find)
        return None if row is None else _epoch(row)

    async def latest_epoch(self) -> Epoch | None:
        async def find(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM epochs ORDER BY number DESC LIMIT 1"
            )

        row = await self._scope.read_primary(find)
        return None if row is None else _epoch(row)

    async def list_epochs(
        self,
        *,
        status: EpochStatus | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Epoch]:
        before = after_int(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM epochs WHERE ($1::text IS NULL OR status = $1)"
                " AND ($2::bigint IS NULL OR number < $2) ORDER BY number DESC LIMIT $3",
                None if status is None else status.value,
                before,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, _epoch, lambda e: (e.number,))

    async def update_epoch(self, epoch: Epoch) -> None:
        async def update(conn: Connection) -> None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM epochs WHERE number = $1 FOR UPDATE", epoch.number
            )
            stored = _epoch(require(row, "epoch", epoch.number))
            if (stored.start, stored.end) != (epoch.start, epoch.end):
                raise IntegrityViolation(f"epoch {epoch.number}: start and end never change")
            if _ORDER[epoch.status] < _ORDER[stored.status]:
                raise IntegrityViolation(
                    f"epoch {epoch.number}: status cannot go from {stored.status} to {epoch.status}"
                )
            await conn.execute(
                "UPDATE epochs SET name = $2, starts_at = $3, ends_at = $4, status = $5,"
                " points = $6, uptime_seconds = $7, users = $8 WHERE number = $1",
                *_args(epoch),
            )

        await self._scope.write(update)
