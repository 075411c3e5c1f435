"""What the dashboard shows about earnings: totals, history, chart series, breakdowns, epochs.

Periods are calendar periods in the user's time zone (:mod:`grass.domain.periods`); series are
zero-filled so a chart has a point for every period. "Epoch" history uses the fixed epochs of
:class:`~grass.services.epochs.EpochService`.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Callable
from typing import Protocol

import attrs

from grass.domain import _checks as check
from grass.domain.earnings import EarningsTotals, ReferralEarning
from grass.domain.epochs import Epoch
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.periods import Period, PeriodTotal, period_start, period_starts, zone
from grass.errors import InvalidInput
from grass.services.epochs import EpochService
from grass.storage.abc import EpochStore
from grass.storage.earnings import EarningsStore
from grass.storage.uptime import UptimeStore
from grass.storage.users import UserStore

#: The longest series one request may ask for (hours in ~3 months).
MAX_POINTS = 2_200
#: Epochs off the hour are read one by one (two queries each): at most this many a request.
MAX_EPOCH_READS = 120
#: The times a series may name: wide enough for any real history, and far enough from the
#: ends of ``datetime`` that period arithmetic in any time zone cannot overflow.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
#: The longest a period can last on a local wall clock (DST and odd historical offset
#: changes included): ``span // longest`` is a lower bound of the points in a span.
_LONGEST = {
    Period.HOUR: dt.timedelta(hours=2),
    Period.DAY: dt.timedelta(hours=26),
    Period.WEEK: dt.timedelta(days=7, hours=2),
    Period.MONTH: dt.timedelta(days=31, hours=2),
}


class HistoryPeriod(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    EPOCH = "epoch"


class InvalidRange(InvalidInput):
    code = "invalid_range"


class EarningsStores(Protocol):
    @property
    def users(self) -> UserStore: ...
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def uptime(self) -> UptimeStore: ...
    @property
    def epochs(self) -> EpochStore: ...


@attrs.frozen(kw_only=True)
class Totals:
    all_time: EarningsTotals
    today: EarningsTotals
    this_epoch: EarningsTotals
    epoch: int
    #: Where "today" starts, in UTC (midnight in the user's time zone).
    today_start: dt.datetime


@attrs.frozen(kw_only=True)
class SeriesPoint:
    start: dt.datetime = attrs.field(validator=check.utc)
    points: int
    uptime_seconds: int


@attrs.frozen(kw_only=True)
class Breakdown:
    """Per device and per IP over the range: points earned and uptime."""

    points_by_device: dict[str, int]
    uptime_by_device: dict[str, int]
    points_by_ip: dict[str, int]
    uptime_by_ip: dict[str, int]


@attrs.frozen(kw_only=True)
class LevelTotal:
    level: int
    amount: int
    referees: int


@attrs.frozen(kw_only=True)
class EpochEarnings:
    epoch: Epoch
    #: This user's points and uptime accrued in the epoch.
    points: int
    uptime_seconds: int


class EarningsService:
    def __init__(
        self,
        stores: EarningsStores,
        epochs: EpochService,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._stores = stores
        self._epochs = epochs
        self._clock = clock

    async def zone_of(self, user_id: str, tz: str | None) -> str:
        """``tz`` when given (checked), else the user's profile time zone."""
        if tz is not None:
            zone(tz)
            return tz
        return (await self._stores.users.get_user(user_id)).profile.timezone

    async def totals(self, user_id: str, tz: str = "UTC") -> Totals:
        now = self._clock()
        today = period_start(now, Period.DAY, tz)
        number = self._epochs.number_at(now)
        epoch_start, epoch_end = self._epochs.bounds(number)
        earnings = self._stores.earnings
        return Totals(
            all_time=await earnings.earnings_totals(user_id=user_id),
            today=await earnings.earnings_totals(user_id=user_id, since=today),
            this_epoch=await earnings.earnings_totals(
                user_id=user_id, since=epoch_start, until=epoch_end
            ),
            epoch=number,
            today_start=today,
        )

    async def series(
        self,
        user_id: str,
        period: HistoryPeriod,
        *,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        device_id: str | None = None,
    ) -> list[SeriesPoint]:
        """Points and uptime per period, ascending, zero-filled from ``since`` to ``until``
        (default: the last 24 hours, 30 days, 12 weeks, 12 months or 8 epochs)."""
        zone(tz)  # an unknown zone is a 400 before anything is read
        _check_times(since, until)
        now = self._clock()
        if period is HistoryPeriod.EPOCH:
            return await self._epoch_series(user_id, since, until, now, device_id)
        unit = Period(period.value)
        default_span = {
            Period.HOUR: dt.timedelta(hours=24),
            Period.DAY: dt.timedelta(days=30),
            Period.WEEK: dt.timedelta(weeks=12),
            Period.MONTH: dt.timedelta(days=365),
        }[unit]
        until = until or now
        since = since or until - default_span
        if since >= until:
            raise InvalidRange("since must be before until")
        # Bounded before any period is walked: the span's length alone refuses a range that
        # surely has too many points, and the walk stops one point past the limit whatever
        # the zone does (a year of hours was 11 s of one CPU, the server frozen meanwhile).
        if (until - since) // _LONGEST[unit] > MAX_POINTS:
            raise InvalidRange(f"at most {MAX_POINTS} points per series")
        axis = list(itertools.islice(period_starts(since, until, unit, tz), MAX_POINTS + 1))
        if len(axis) > MAX_POINTS:
            raise InvalidRange(f"at most {MAX_POINTS} points per series")
        first = axis[0] if axis else since
        points = await self._stores.earnings.earnings_series(
            user_id, period=unit, tz=tz, since=first, until=until, device_id=device_id
        )
        uptime = await self._stores.uptime.uptime_series(
            user_id, period=unit, tz=tz, since=first, until=until, device_id=device_id
        )
        return _zero_filled(axis, points, uptime)

    async def _epoch_series(
        self,
        user_id: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        now: dt.datetime,
        device_id: str | None,
    ) -> list[SeriesPoint]:
        until = until or now
        if since is not None and since >= until:
            raise InvalidRange("since must be before until")
        last = self._epochs.number_at(until)
        first = self._epochs.number_at(since) if since else max(0, last - 7)
        if last - first + 1 > MAX_POINTS:
            raise InvalidRange(f"at most {MAX_POINTS} points per series")
        numbers = range(first, last + 1)
        start, end = self._epochs.bounds(first)[0], self._epochs.bounds(last)[1]
        unit = _unit_within(start, self._epochs.bounds(first)[1] - start)
        if unit is None:
            # Epochs off the hour: an hour's total may straddle two of them, so each is read
            # on its own (two queries each): fewer of them per request.
            if len(numbers) > MAX_EPOCH_READS:
                raise InvalidRange(
                    f"at most {MAX_EPOCH_READS} epochs per series (epochs are off the hour)"
                )
            return [await self._one_epoch(user_id, n, device_id) for n in numbers]
        # One series per kind in days or hours (UTC), each day or hour added to its epoch.
        points = await self._stores.earnings.earnings_series(
            user_id, period=unit, since=start, until=end, device_id=device_id
        )
        uptime = await self._stores.uptime.uptime_series(
            user_id, period=unit, since=start, until=end, device_id=device_id
        )
        p, u = self._per_epoch(points), self._per_epoch(uptime)
        return [
            SeriesPoint(
                start=self._epochs.bounds(n)[0], points=p.get(n, 0), uptime_seconds=u.get(n, 0)
            )
            for n in numbers
        ]

    def _per_epoch(self, totals: list[PeriodTotal]) -> dict[int, int]:
        sums: dict[int, int] = {}
        for t in totals:
            number = self._epochs.number_at(t.start)
            sums[number] = sums.get(number, 0) + t.value
        return sums

    async def _one_epoch(self, user_id: str, number: int, device_id: str | None) -> SeriesPoint:
        start, end = self._epochs.bounds(number)
        points = await self._stores.earnings.earnings_series(
            user_id, period=Period.MONTH, since=start, until=end, device_id=device_id
        )
        uptime = await self._stores.uptime.uptime_stats(
            user_id=user_id, device_id=device_id, since=start, until=end
        )
        total = sum(p.value for p in points)
        return SeriesPoint(start=start, points=total, uptime_seconds=uptime.seconds)

    async def breakdown(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> Breakdown:
        _check_times(since, until)
        earnings, uptime = self._stores.earnings, self._stores.uptime
        by_device = await uptime.uptime_by_device(user_id, since=since, until=until)
        by_ip = await uptime.uptime_by_ip(user_id=user_id, since=since, until=until)
        return Breakdown(
            points_by_device=await earnings.earnings_by_device(user_id, since=since, until=until),
            uptime_by_device={d: s.seconds for d, s in by_device.items()},
            points_by_ip=await earnings.earnings_by_ip(user_id, since=since, until=until),
            uptime_by_ip={ip: s.seconds for ip, s in by_ip.items()},
        )

    async def referral_levels(self, user_id: str) -> list[LevelTotal]:
        """Referral earnings per level 1-3 (every level present)."""
        rows = await self._stores.earnings.referral_earnings(user_id)
        return [
            LevelTotal(
                level=level,
                amount=sum(r.amount for r in rows if r.level == level),
                referees=len({r.referee_id for r in rows if r.level == level}),
            )
            for level in (1, 2, 3)
        ]

    async def referral_rows(self, user_id: str) -> list[ReferralEarning]:
        return await self._stores.earnings.referral_earnings(user_id)

    async def epochs(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[EpochEarnings]:
        """The epoch list, newest first, each with its (frozen, once closed) network totals and
        this user's points and uptime in it."""
        await self._epochs.ensure(self._epochs.number_at(self._clock()))
        page = await self._stores.epochs.list_epochs(cursor=cursor, limit=limit)
        points = {t.epoch: t.value for t in await self._stores.earnings.earnings_by_epoch(user_id)}
        uptime = {t.epoch: t.value for t in await self._stores.uptime.uptime_by_epoch(user_id)}
        return Page(
            tuple(
                EpochEarnings(
                    epoch=e, points=points.get(e.number, 0), uptime_seconds=uptime.get(e.number, 0)
                )
                for e in page.items
            ),
            page.next_cursor,
        )


def _check_times(*times: dt.datetime | None) -> None:
    for at in times:
        if at is not None and not EARLIEST <= at <= LATEST:
            raise InvalidRange(f"times must be from {EARLIEST.isoformat()} to {LATEST.isoformat()}")


def _unit_within(start: dt.datetime, length: dt.timedelta) -> Period | None:
    """The longest UTC period (day or hour) that epochs starting at ``start`` never split."""
    for unit, seconds in ((Period.DAY, 86_400), (Period.HOUR, 3_600)):
        if not start.timestamp() % seconds and not length.total_seconds() % seconds:
            return unit
    return None


def _zero_filled(
    axis: list[dt.datetime], points: list[PeriodTotal], uptime: list[PeriodTotal]
) -> list[SeriesPoint]:
    p = {t.start: t.value for t in points}
    u = {t.start: t.value for t in uptime}
    return [SeriesPoint(start=s, points=p.get(s, 0), uptime_seconds=u.get(s, 0)) for s in axis]
