"""``/api/v1/earnings/*``, ``/api/v1/epochs`` and ``/api/v1/referrals*``: what a user earned, when,
where and from whom (architecture §5, §8). Amounts are integer micro-points; periods are in the
user's time zone (the profile's, or ``tz``)."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.earnings import EarningsTotals
from grass.domain.pages import Page
from grass.domain.users import ApiScope
from grass.http import schema as s
from grass.http.api import Call, PageQuery, route
from grass.http.auth import user_or_key
from grass.http.views import time_zone
from grass.services.earnings import EarningsService, HistoryPeriod, InvalidRange
from grass.services.referrals import ReferralService, RewardedReferral

EARNINGS = user_or_key(ApiScope.EARNINGS_READ)
STATS = user_or_key(ApiScope.STATS_READ, ApiScope.EARNINGS_READ)


@attrs.frozen(kw_only=True)
class AmountView:
    total: int
    by_source: dict[str, int]

    @classmethod
    def of(cls, totals: EarningsTotals) -> AmountView:
        return cls(total=totals.total, by_source={k.value: v for k, v in totals.by_source.items()})


@attrs.frozen(kw_only=True)
class TotalsView:
    all_time: AmountView
    today: AmountView
    this_epoch: AmountView
    epoch: int
    today_start: dt.datetime
    timezone: str


@attrs.frozen(kw_only=True)
class ZoneQuery:
    tz: str | None = time_zone(default=None)


@attrs.frozen(kw_only=True)
class HistoryQuery:
    period: HistoryPeriod = HistoryPeriod.DAY
    tz: str | None = time_zone(default=None)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    device_id: str | None = s.text(max_length=64, optional=True, default=None)


@attrs.frozen(kw_only=True)
class PointView:
    start: dt.datetime
    points: int
    uptime_seconds: int


@attrs.frozen(kw_only=True)
class RangeQuery:
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@attrs.frozen(kw_only=True)
class BreakdownView:
    points_by_device: dict[str, int]
    uptime_by_device: dict[str, int]
    points_by_ip: dict[str, int]
    uptime_by_ip: dict[str, int]


@attrs.frozen(kw_only=True)
class LevelView:
    level: int
    amount: int
    referees: int


@attrs.frozen(kw_only=True)
class EpochView:
    number: int
    name: str
    start: dt.datetime
    end: dt.datetime
    status: str
    #: Frozen network totals once the epoch closed (null while open).
    network_points: int | None
    network_uptime_seconds: int | None
    network_users: int | None
    #: This user's points and uptime in the epoch.
    points: int
    uptime_seconds: int


@attrs.frozen(kw_only=True)
class ReferralQuery(PageQuery):
    level: int | None = None


@attrs.frozen(kw_only=True)
class RefereeView:
    """One of my referees. Another user's id is never shown: ``ref`` is an opaque reference
    to this referee, stable, and mine only (another referrer of the same user sees another)."""

    ref: str
    level: int
    status: str
    joined_at: dt.datetime
    rewards: int

    @classmethod
    def of(cls, item: RewardedReferral) -> RefereeView:
        return cls(
            ref=item.referral.ref,
            level=item.referral.level,
            status=item.referral.status.value,
            joined_at=item.referral.created_at,
            rewards=item.rewards,
        )


@attrs.frozen(kw_only=True)
class RankView:
    name: str
    min_qualified: int


@attrs.frozen(kw_only=True)
class SummaryView:
    counts: dict[str, int]
    qualified: int
    total_rewards: int
    rank: RankView
    next_rank: RankView | None


class EarningsRoutes:
    """What a user earned, when and where, and the epochs (grass.services.earnings)."""

    def __init__(self, earnings: EarningsService) -> None:
        self._earnings = earnings

    @route(
        "GET",
        "/api/v1/earnings/totals",
        summary="My points: all time, today and this epoch, by source",
        tag="earnings",
        auth=EARNINGS,
        query=ZoneQuery,
        response=TotalsView,
    )
    async def earnings_totals(self, call: Call) -> TotalsView:
        tz = await self._earnings.zone_of(call.user_id, call.query.tz)
        t = await self._earnings.totals(call.user_id, tz)
        return TotalsView(
            all_time=AmountView.of(t.all_time),
            today=AmountView.of(t.today),
            this_epoch=AmountView.of(t.this_epoch),
            epoch=t.epoch,
            today_start=t.today_start,
            timezone=tz,
        )

    @route(
        "GET",
        "/api/v1/earnings/history",
        summary="Points and uptime per hour, day, week, month or epoch (zero-filled chart series)",
        tag="earnings",
        auth=EARNINGS,
        query=HistoryQuery,
        response=list[PointView],
        errors=(InvalidRange,),
    )
    async def earnings_history(self, call: Call) -> list[PointView]:
        q: HistoryQuery = call.query
        tz = await self._earnings.zone_of(call.user_id, q.tz)
        series = await self._earnings.series(
            call.user_id, q.period, tz=tz, since=q.since, until=q.until, device_id=q.device_id
        )
        return [
            PointView(start=p.start, points=p.points, uptime_seconds=p.uptime_seconds)
            for p in series
        ]

    @route(
        "GET",
        "/api/v1/earnings/breakdown",
        summary="Points and uptime per device and per IP",
        tag="earnings",
        auth=EARNINGS,
        query=RangeQuery,
        response=BreakdownView,
        errors=(InvalidRange,),
    )
    async def earnings_breakdown(self, call: Call) -> BreakdownView:
        b = await self._earnings.breakdown(
            call.user_id, since=call.query.since, until=call.query.until
        )
        return BreakdownView(
            points_by_device=b.points_by_device,
            uptime_by_device=b.uptime_by_device,
            points_by_ip=b.points_by_ip,
            uptime_by_ip=b.uptime_by_ip,
        )

    @route(
        "GET",
        "/api/v1/earnings/referrals",
        summary="Referral earnings by level",
        tag="earnings",
        auth=EARNINGS,
        response=list[LevelView],
    )
    async def earnings_referrals(self, call: Call) -> list[LevelView]:
        levels = await self._earnings.referral_levels(call.user_id)
        return [LevelView(level=t.level, amount=t.amount, referees=t.referees) for t in levels]

    @route(
        "GET",
        "/api/v1/epochs",
        summary="Epochs, newest first, with the network's frozen totals and mine",
        tag="earnings",
        auth=EARNINGS,
        query=PageQuery,
        page_of=EpochView,
    )
    async def list_epochs(self, call: Call) -> Page[EpochView]:
        page = await self._earnings.epochs(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        items = []
        for row in page.items:
            e, totals = row.epoch, row.epoch.totals
            items.append(
                EpochView(
                    number=e.number,
                    name=e.name,
                    start=e.start,
                    end=e.end,
                    status=e.status.value,
                    network_points=None if totals is None else totals.points,
                    network_uptime_seconds=None if totals is None else totals.uptime_seconds,
                    network_users=None if totals is None else totals.users,
                    points=row.points,
                    uptime_seconds=row.uptime_seconds,
                )
            )
        return Page(tuple(items), page.next_cursor)


class ReferralRoutes:
    """My referees, their status and what they earned me (grass.services.referrals)."""

    def __init__(self, referrals: ReferralService) -> None:
        self._referrals = referrals

    @route(
        "GET",
        "/api/v1/referrals",
        summary="My referees with their status and the rewards each earned me",
        tag="referrals",
        auth=STATS,
        query=ReferralQuery,
        page_of=RefereeView,
    )
    async def list_referrals(self, call: Call) -> Page[RefereeView]:
        q: ReferralQuery = call.query
        page = await self._referrals.list(
            call.user_id, level=q.level, cursor=q.cursor, limit=q.limit
        )
        return page.map(RefereeView.of)

    @route(
        "GET",
        "/api/v1/referrals/summary",
        summary="Referees per level, qualified referees, rewards and rank",
        tag="referrals",
        auth=STATS,
        response=SummaryView,
    )
    async def referral_summary(self, call: Call) -> SummaryView:
        s = await self._referrals.summary(call.user_id)
        return SummaryView(
            counts={str(level): n for level, n in s.counts.items()},
            qualified=s.qualified,
            total_rewards=s.total_rewards,
            rank=RankView(name=s.rank.name, min_qualified=s.rank.min_qualified),
            next_rank=None
            if s.next_rank is None
            else RankView(name=s.next_rank.name, min_qualified=s.next_rank.min_qualified),
        )
