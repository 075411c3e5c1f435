"""Calendar periods in a user's timezone: the one definition every backend aggregates by.

A time belongs to the period whose local start is the time truncated on the local wall clock
(hour; day at 00:00; ISO week from Monday 00:00; month from the 1st at 00:00) and expressed
again in UTC. Python's fold attribute keeps the two local hours of a DST fall-back apart.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterator

import attrs

from grass.domain import _checks as check

UTC = dt.UTC
_QUARTER = dt.timedelta(minutes=15)


class Period(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@attrs.frozen(kw_only=True)
class PeriodTotal:
    """An aggregate for one period; ``start`` is the period's local start, in UTC."""

    start: dt.datetime = attrs.field(validator=check.utc)
    value: int = attrs.field(validator=check.integer)


@attrs.frozen(kw_only=True)
class EpochTotal:
    epoch: int = attrs.field(validator=check.non_negative)
    value: int = attrs.field(validator=check.integer)


def zone(tz: str | dt.tzinfo) -> dt.tzinfo:
    if isinstance(tz, dt.tzinfo):
        return tz
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise check.InvalidModel("timezone", f"unknown time zone {tz!r}") from None


def period_start(at: dt.datetime, period: Period, tz: str | dt.tzinfo = "UTC") -> dt.datetime:
    """The UTC start of the ``period`` (in ``tz``) that contains ``at``."""
    local = at.astimezone(zone(tz))
    if period is Period.HOUR:
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if period is Period.WEEK:
            local = _wall(local, local.date() - dt.timedelta(days=local.weekday()))
        elif period is Period.MONTH:
            local = _wall(local, local.date().replace(day=1))
    return local.astimezone(UTC)


def _wall(local: dt.datetime, day: dt.date) -> dt.datetime:
    # Rebuilding from the date, not subtracting a timedelta, keeps it on the wall clock.
    return dt.datetime.combine(day, dt.time(0), tzinfo=local.tzinfo)


def next_period_start(
    start: dt.datetime, period: Period, tz: str | dt.tzinfo = "UTC"
) -> dt.datetime:
    """The start of the period after the one that starts at (or contains) ``start``."""
    tzinfo = zone(tz)
    current = period_start(start, period, tzinfo)
    if period is Period.HOUR:
        # Local hours may last 30 to 90 minutes around a DST change: walk in quarter hours
        # (every current UTC offset is a multiple of 15 minutes).
        probe = current + _QUARTER
        while period_start(probe, period, tzinfo) == current:
            probe += _QUARTER
        return period_start(probe, period, tzinfo)
    day = current.astimezone(tzinfo).date()
    if period is Period.DAY:
        day += dt.timedelta(days=1)
    elif period is Period.WEEK:
        day += dt.timedelta(days=7)
    else:
        day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    # Midnight may not exist on the new day (a DST jump at 00:00): normalise through period_start.
    candidate = dt.datetime.combine(day, dt.time(0), tzinfo=tzinfo).astimezone(UTC)
    return period_start(candidate + dt.timedelta(hours=3), period, tzinfo)


def period_starts(
    since: dt.datetime, until: dt.datetime, period: Period, tz: str | dt.tzinfo = "UTC"
) -> Iterator[dt.datetime]:
    """Every period start from the one containing ``since`` up to (excluding) ``until``: the
    axis of a zero-filled chart."""
    tzinfo = zone(tz)
    start = period_start(since, period, tzinfo)
    while start < until:
        yield start
        start = next_period_start(start, period, tzinfo)
