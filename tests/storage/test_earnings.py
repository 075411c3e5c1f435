"""EarningsStore: idempotent batch insert and every earnings view."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain.earnings import EarningSource, ReferralEarning
from grass.domain.epochs import Epoch
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.errors import IntegrityViolation, StorageConflict
from grass.ids import new_uuid, short_id
from tests.storage.conftest import T0, add_user, at, collect, make_entry, make_user


async def test_insert_and_find(storage):
    user = await add_user(storage)
    entries = [make_entry(user, amount=10 * i, accrued_at=at(i)) for i in range(3)]
    result = await storage.earnings.insert_earnings(entries)
    assert (result.inserted, result.duplicates) == (3, ())
    assert await storage.earnings.find_earning(entries[1].idempotency_key) == entries[1]
    assert await storage.earnings.find_earning("missing") is None
    assert await storage.earnings.insert_earnings([]) == type(result)(inserted=0)


async def test_retry_with_same_content_is_ignored_and_reported(storage):
    user = await add_user(storage)
    first = make_entry(user, device_id=new_uuid(), ip="203.0.113.1", bucket_start=T0)
    await storage.earnings.insert_earnings([first])
    # A retry makes a new id and insertion time: still the same credit.
    retry = attrs.evolve(first, id=short_id(), created_at=at(5))
    fresh = make_entry(user)
    result = await storage.earnings.insert_earnings([retry, fresh])
    assert result.inserted == 1
    assert result.duplicates == (first.idempotency_key,)
    assert await storage.earnings.find_earning(first.idempotency_key) == first
    assert (await storage.earnings.earnings_totals(user_id=user.id)).total == 2_000


async def test_duplicate_key_inside_one_batch(storage):
    user = await add_user(storage)
    entry = make_entry(user)
    twin = attrs.evolve(entry, id=short_id())
    result = await storage.earnings.insert_earnings([entry, twin])
    assert (result.inserted, result.duplicates) == (1, (entry.idempotency_key,))
    with pytest.raises(StorageConflict):
        await storage.earnings.insert_earnings(
            [make_entry(user, idempotency_key="k"), make_entry(user, idempotency_key="k", amount=2)]
        )
    assert await storage.earnings.find_earning("k") is None


async def test_key_with_other_content_conflicts_and_writes_nothing(storage):
    user = await add_user(storage)
    entry = make_entry(user)
    await storage.earnings.insert_earnings([entry])
    fresh = make_entry(user)
    changed = attrs.evolve(entry, id=short_id(), amount=entry.amount + 1)
    with pytest.raises(StorageConflict):
        await storage.earnings.insert_earnings([fresh, changed])
    assert await storage.earnings.find_earning(fresh.idempotency_key) is None
    with pytest.raises(StorageConflict):
        await storage.earnings.insert_earnings([make_entry(user, id=entry.id)])


async def test_unknown_user_is_an_integrity_violation(storage):
    user = await add_user(storage)
    ok = make_entry(user)
    with pytest.raises(IntegrityViolation):
        await storage.earnings.insert_earnings([ok, make_entry(make_user())])
    assert await storage.earnings.find_earning(ok.idempotency_key) is None


async def test_list_earnings_filters_and_order(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    entries = [
        make_entry(
            user, accrued_at=at(i // 2), source=[EarningSource.UPTIME, EarningSource.NETWORK][i % 2]
        )
        for i in range(7)
    ]
    await storage.earnings.insert_earnings([*entries, make_entry(other)])
    listed = await collect(lambda **kw: storage.earnings.list_earnings(user.id, **kw), limit=3)
    assert listed == sorted(entries, key=lambda e: (e.accrued_at, e.id), reverse=True)
    network = await storage.earnings.list_earnings(
        user.id, source=EarningSource.NETWORK, since=at(1), until=at(3)
    )
    assert set(network.items) == {e for e in entries[2:6] if e.source is EarningSource.NETWORK}


async def test_list_bucket_earnings(storage):
    user = await add_user(storage)
    paid = [make_entry(user, bucket_start=T0) for _ in range(4)]
    bonus = make_entry(
        user,
        bucket_start=T0,
        source=EarningSource.REFERRAL,
        referee_id=short_id(),
        referral_level=2,
    )
    await storage.earnings.insert_earnings([*paid, bonus, make_entry(user, bucket_start=at(1))])
    listed = await collect(
        lambda **kw: storage.earnings.list_bucket_earnings(T0, source=EarningSource.UPTIME, **kw),
        limit=3,
    )
    assert listed == sorted(paid, key=lambda e: e.id)
    assert len((await storage.earnings.list_bucket_earnings(T0)).items) == 5


async def test_totals_by_source_and_users(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    await storage.earnings.insert_earnings(
        [
            make_entry(user, amount=100, accrued_at=at(0)),
            make_entry(user, amount=50, accrued_at=at(1), source=EarningSource.MILESTONE),
            make_entry(user, amount=-30, accrued_at=at(2), source=EarningSource.ADJUSTMENT),
            make_entry(other, amount=7, accrued_at=at(2)),
        ]
    )
    totals = await storage.earnings.earnings_totals(user_id=user.id)
    assert totals.total == 120
    assert totals.by_source == {
        EarningSource.UPTIME: 100,
        EarningSource.REFERRAL: 0,
        EarningSource.MILESTONE: 50,
        EarningSource.NETWORK: 0,
        EarningSource.ADJUSTMENT: -30,
    }
    assert (await storage.earnings.earnings_totals(since=at(1))).total == 27
    assert (await storage.earnings.earnings_totals(user_id=user.id, until=at(1))).total == 100
    assert await storage.earnings.count_earning_users() == 2
    assert await storage.earnings.count_earning_users(until=at(2)) == 1
    assert await storage.earnings.count_earning_users(since=at(3)) == 0


async def test_series_day_boundary_in_a_timezone(storage):
    user = await add_user(storage)
    device = new_uuid()
    # Sunday 3 March 23:30 UTC and Monday 00:30 UTC; in Los Angeles (UTC-8) both are Sunday.
    await storage.earnings.insert_earnings(
        [
            make_entry(user, amount=5, accrued_at=T0 - dt.timedelta(minutes=30), device_id=device),
            make_entry(user, amount=7, accrued_at=T0 + dt.timedelta(minutes=30)),
            make_entry(
                user,
                amount=11,
                accrued_at=T0 + dt.timedelta(minutes=40),
                source=EarningSource.NETWORK,
            ),
        ]
    )
    utc = await storage.earnings.earnings_series(user.id, period=Period.DAY)
    assert utc == [
        PeriodTotal(start=T0 - dt.timedelta(days=1), value=5),
        PeriodTotal(start=T0, value=18),
    ]
    la = await storage.earnings.earnings_series(
        user.id, period=Period.DAY, tz="America/Los_Angeles"
    )
    assert la == [PeriodTotal(start=dt.datetime(2024, 3, 3, 8, tzinfo=dt.UTC), value=23)]
    hours = await storage.earnings.earnings_series(
        user.id, period=Period.HOUR, source=EarningSource.UPTIME, since=T0
    )
    assert hours == [PeriodTotal(start=T0, value=7)]
    assert await storage.earnings.earnings_series(
        user.id, period=Period.MONTH, device_id=device
    ) == [PeriodTotal(start=dt.datetime(2024, 3, 1, tzinfo=dt.UTC), value=5)]


async def test_earnings_by_epoch(storage):
    user = await add_user(storage)
    await storage.epochs.create_epoch(Epoch(number=0, name="genesis", start=at(0), end=at(24)))
    await storage.epochs.create_epoch(Epoch(number=1, name="one", start=at(24), end=at(48)))
    await storage.earnings.insert_earnings(
        [make_entry(user, amount=h + 100, accrued_at=at(h)) for h in (-1, 0, 23, 24, 47, 48)]
    )
    assert await storage.earnings.earnings_by_epoch(user.id) == [
        EpochTotal(epoch=0, value=223),
        EpochTotal(epoch=1, value=271),
    ]


async def test_by_device_ip_and_referral(storage):
    user = await add_user(storage)
    a, b = new_uuid(), new_uuid()
    r1, r2 = short_id(), short_id()
    await storage.earnings.insert_earnings(
        [
            make_entry(user, amount=10, device_id=a, ip="203.0.113.1"),
            make_entry(user, amount=20, device_id=a, ip="203.0.113.2", accrued_at=at(1)),
            make_entry(user, amount=40, device_id=b, ip="203.0.113.1", accrued_at=at(2)),
            make_entry(user, amount=80),
            make_entry(
                user, amount=3, source=EarningSource.REFERRAL, referee_id=r1, referral_level=1
            ),
            make_entry(
                user, amount=4, source=EarningSource.REFERRAL, referee_id=r1, referral_level=1
            ),
            make_entry(
                user,
                amount=5,
                source=EarningSource.REFERRAL,
                referee_id=r2,
                referral_level=2,
                accrued_at=at(3),
            ),
            make_entry(user, amount=9, source=EarningSource.MILESTONE, referee_id=r2),
        ]
    )
    assert await storage.earnings.earnings_by_device(user.id) == {a: 30, b: 40}
    assert await storage.earnings.earnings_by_device(user.id, since=at(1), until=at(2)) == {a: 20}
    assert await storage.earnings.earnings_by_ip(user.id) == {"203.0.113.1": 50, "203.0.113.2": 20}
    assert await storage.earnings.referral_earnings(user.id) == [
        ReferralEarning(referee_id=r1, level=1, amount=7),
        ReferralEarning(referee_id=r2, level=2, amount=5),
    ]
    assert await storage.earnings.referral_earnings(user.id, until=at(3)) == [
        ReferralEarning(referee_id=r1, level=1, amount=7)
    ]
    assert await storage.earnings.referral_earnings(user.id, referee_ids=[r2, "other"]) == [
        ReferralEarning(referee_id=r2, level=2, amount=5)
    ]
    assert await storage.earnings.referral_earnings(user.id, referee_ids=[]) == []
