"""Helpers every PostgreSQL store shares: keyset pages (cursor in, page out), so each list is
one ``LIMIT n + 1`` query whose extra row only says whether another page exists; NotFound from
a missing row or an untouched command tag; addresses and ids as text; time filters, and sums
folded into calendar periods."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from grass.domain.pages import (
    CursorPart,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    from_micros,
)
from grass.domain.periods import Period, PeriodTotal, period_start, zone
from grass.errors import StorageNotFound
from grass.postgres.connection import Record

__all__ = [
    "after_int",
    "after_time_text",
    "fold_periods",
    "page_of",
    "require",
    "require_rows",
    "row_count",
    "text_or_none",
    "time_filter",
]

T = TypeVar("T")


# --- shared by the PostgreSQL stores ------------------------------------------------------------


def _after(cursor: str | None, limit: int, kinds: Sequence[type]) -> tuple[CursorPart, ...]:
    check_limit(limit)
    if cursor is None:
        return (None,) * len(kinds)
    parts = decode_cursor(cursor, kinds)
    if None in parts:
        raise InvalidPage("malformed cursor")
    return parts


def after_time_text(cursor: str | None, limit: int) -> tuple[dt.datetime | None, str | None]:
    """The (time, text) sort key a cursor continues after; (None, None) on the first page."""
    when, key = _after(cursor, limit, (int, str))
    return (None if when is None else from_micros(int(when))), (None if key is None else str(key))


def after_int(cursor: str | None, limit: int) -> int | None:
    (number,) = _after(cursor, limit, (int,))
    return None if number is None else int(number)


def page_of(
    rows: Sequence[Record],
    limit: int,
    build: Callable[[Record], T],
    key: Callable[[T], Sequence[CursorPart]],
) -> Page[T]:
    """A page from ``limit + 1`` fetched rows (the extra one only tells that more remain)."""
    items = tuple(build(row) for row in rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(key(items[-1])) if more else None)


def require(row: T | None, what: str, key: object) -> T:
    if row is None:
        raise StorageNotFound(f"{what} {key} not found", details={"key": str(key)})
    return row


def require_rows(status: str, what: str, key: object) -> None:
    """NotFound when a command tag says no row was touched (raised inside the transaction, so
    that a unit of work is doomed by it as by any failed operation)."""
    if row_count(status) == 0:
        raise StorageNotFound(f"{what} {key} not found", details={"key": str(key)})


def text_or_none(value: Any) -> str | None:
    """inet (and uuid) columns come back as ipaddress (UUID) objects: their str is canonical."""
    return None if value is None else str(value)


def row_count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


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
