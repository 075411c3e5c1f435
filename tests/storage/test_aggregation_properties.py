"""Property tests: every aggregation against a naive reference computed here, on random data."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grass.domain.earnings import EarningSource
from grass.domain.epochs import Epoch
from grass.domain.periods import Period
from grass.domain.uptime import UptimeStats
from tests.storage.conftest import delta, make_device, make_entry, make_user

# Five weeks holding DST changes in the US (10 March), the EU (31 March), Chile and Lord Howe
# (7 April, where the clock moves by 30 minutes).
START = dt.datetime(2024, 3, 9, tzinfo=dt.UTC)
SPAN_HOURS = 24 * 35
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/Santiago",
]
IPS = ["203.0.113.1", "203.0.113.2", "2001:db8::1"]
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

uptime_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # device index
        st.integers(0, SPAN_HOURS),  # bucket hour
        st.sampled_from(IPS),
        st.integers(0, 3600),
        st.integers(0, 5),  # rtt samples
        st.integers(0, 3),  # reconnects
    ),
    max_size=40,
)
earning_rows = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, SPAN_HOURS * 60),  # minute
        st.sampled_from(list(EarningSource)),
        st.integers(0, 10**9),
    ),
    max_size=40,
)


def naive_start(at: dt.datetime, period: Period, tz: str) -> dt.datetime:
    """The same rule as grass.domain.periods, written out field by field."""
    zone = zoneinfo.ZoneInfo(tz)
    local = at.astimezone(zone)
    if period is Period.HOUR:
        fields = (local.year, local.month, local.day, local.hour)
    elif period is Period.DAY:
        fields = (local.year, local.month, local.day, 0)
    elif period is Period.WEEK:
        monday = local.date() - dt.timedelta(days=local.isoweekday() - 1)
        fields = (monday.year, monday.month, monday.day, 0)
    else:
        fields = (local.year, local.month, 1, 0)
    fold = local.fold if period is Period.HOUR else 0
    return dt.datetime(*fields, tzinfo=zone, fold=fold).astimezone(dt.UTC)


def grouped(pairs):
    sums = {}
    for key, value in pairs:
        sums[key] = sums.get(key, 0) + value
    return sums


async def _seed(storage):
    users = [make_user() for _ in range(2)]
    for user in users:
        await storage.users.create_user(user)
    devices = [make_device(users[i % 2]) for i in range(4)]
    for device in devices:
        await storage.devices.create_device(device)
    return users, devices


@PROPERTY
@given(rows=uptime_rows, period=st.sampled_from(list(Period)), tz=st.sampled_from(ZONES))
async def test_uptime_aggregations_match_reference(open_storage, rows, period, tz):
    async with open_storage() as storage:
        users, devices = await _seed(storage)
        deltas = [
            delta(
                devices[d],
                START + dt.timedelta(hours=h),
                seconds,
                ip=ip,
                rtt_count=rtt,
                rtt_sum_ms=rtt * 7,
                rtt_max_ms=rtt * 3,
                reconnects=rec,
            )
            for d, h, ip, seconds, rtt, rec in rows
        ]
        # Flushed in two batches: buckets must add up across flushes and within one.
        await storage.uptime.add_uptime(deltas[: len(deltas) // 2])
        await storage.uptime.add_uptime(deltas[len(deltas) // 2 :])
        user = users[0]
        mine = [x for x in deltas if x.user_id == user.id]

        series = await storage.uptime.uptime_series(user.id, period=period, tz=tz)
        expected = grouped((naive_start(x.bucket_start, period, tz), x.stats.seconds) for x in mine)
        assert {p.start: p.value for p in series} == expected
        assert [p.start for p in series] == sorted(expected)

        by_device = await storage.uptime.uptime_by_device(user.id)
        assert {k: v.seconds for k, v in by_device.items()} == grouped(
            (x.device_id, x.stats.seconds) for x in mine
        )
        by_ip = await storage.uptime.uptime_by_ip()
        assert {k: v.seconds for k, v in by_ip.items()} == grouped(
            (x.ip, x.stats.seconds) for x in deltas
        )
        total = UptimeStats()
        for x in mine:
            total += x.stats
        assert await storage.uptime.uptime_stats(user_id=user.id) == total
        cut = START + dt.timedelta(hours=SPAN_HOURS // 2)
        assert (await storage.uptime.uptime_stats(since=cut)).seconds == sum(
            x.stats.seconds for x in deltas if x.bucket_start >= cut
        )
        assert await storage.uptime.bucket_starts() == sorted({x.bucket_start for x in deltas})


@PROPERTY
@given(
    rows=earning_rows,
    period=st.sampled_from(list(Period)),
    tz=st.sampled_from(ZONES),
    epoch_hours=st.integers(1, 24 * 7),
)
async def test_earnings_aggregations_match_reference(open_storage, rows, period, tz, epoch_hours):
    async with open_storage() as storage:
        users, devices = await _seed(storage)
        length = dt.timedelta(hours=epoch_hours)
        epochs = []
        for number in range(SPAN_HOURS // epoch_hours // 2):  # epochs cover the first half only
            e = Epoch(
                number=number,
                name=f"E{number}",
                start=START + number * length,
                end=START + (number + 1) * length,
            )
            await storage.epochs.create_epoch(e)
            epochs.append(e)
        entries = []
        for d, minute, source, amount in rows:
            device = devices[d]
            referral = source is EarningSource.REFERRAL
            entries.append(
                make_entry(
                    device.user_id,
                    source=source,
                    amount=amount,
                    accrued_at=START + dt.timedelta(minutes=minute),
                    device_id=device.device_id if d < 3 else None,
                    ip=IPS[d % len(IPS)],
                    referee_id=users[1].id if referral else None,
                    referral_level=1 + d % 3 if referral else None,
                )
            )
        await storage.earnings.insert_earnings(entries)
        user = users[0]
        mine = [e for e in entries if e.user_id == user.id]

        series = await storage.earnings.earnings_series(user.id, period=period, tz=tz)
        expected = grouped((naive_start(e.accrued_at, period, tz), e.amount) for e in mine)
        assert {p.start: p.value for p in series} == expected
        assert [p.start for p in series] == sorted(expected)

        by_epoch = await storage.earnings.earnings_by_epoch(user.id)
        expected_epochs = grouped(
            (ep.number, e.amount)
            for e in mine
            for ep in epochs
            if ep.start <= e.accrued_at < ep.end
        )
        assert {t.epoch: t.value for t in by_epoch} == expected_epochs

        totals = await storage.earnings.earnings_totals(user_id=user.id)
        assert totals.total == sum(e.amount for e in mine)
        assert {k: v for k, v in totals.by_source.items() if v} == {
            k: v for k, v in grouped((e.source, e.amount) for e in mine).items() if v
        }
        assert await storage.earnings.earnings_by_device(user.id) == {
            k: v for k, v in grouped((e.device_id, e.amount) for e in mine).items() if k is not None
        }
        assert await storage.earnings.earnings_by_ip(user.id) == grouped(
            (e.ip, e.amount) for e in mine
        )
        referrals = await storage.earnings.referral_earnings(user.id)
        assert {(r.level, r.referee_id): r.amount for r in referrals} == grouped(
            ((e.referral_level, e.referee_id), e.amount)
            for e in mine
            if e.source is EarningSource.REFERRAL
        )
        assert await storage.earnings.count_earning_users() == len({e.user_id for e in entries})


def test_reference_agrees_with_a_known_dst_case():
    # New York falls back on 3 November 2024: 01:30 local happens twice, an hour apart.
    first = dt.datetime(2024, 11, 3, 5, 30, tzinfo=dt.UTC)
    second = first + dt.timedelta(hours=1)
    assert naive_start(first, Period.HOUR, "America/New_York") == first - dt.timedelta(minutes=30)
    assert naive_start(second, Period.HOUR, "America/New_York") == second - dt.timedelta(minutes=30)
    assert naive_start(second, Period.DAY, "America/New_York") == dt.datetime(
        2024, 11, 3, 4, tzinfo=dt.UTC
    )
