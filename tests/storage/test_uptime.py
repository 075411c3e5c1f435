"""UptimeStore: the batch flush and every uptime view."""

from __future__ import annotations

import datetime as dt

import pytest

from grass.domain.epochs import Epoch
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.domain.uptime import UptimeStats
from grass.ids import new_uuid
from grass.storage.abc import InvalidPage
from tests.storage.conftest import HOUR, T0, add_device, add_user, at, collect, delta, make_device


async def test_flush_adds_into_buckets(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    first = await storage.uptime.add_uptime(
        [delta(device, seconds=20, rtt_count=1, rtt_sum_ms=40, rtt_max_ms=40)]
    )
    assert first.applied == 1
    assert first.unknown_devices == frozenset()
    await storage.uptime.add_uptime(
        [
            delta(device, seconds=30, rtt_count=2, rtt_sum_ms=50, rtt_max_ms=30, reconnects=1),
            delta(device, seconds=10, rtt_count=1, rtt_sum_ms=90, rtt_max_ms=90),
        ]
    )
    page = await storage.uptime.list_buckets(T0)
    (bucket,) = page.items
    assert bucket.stats == UptimeStats(
        seconds=60, rtt_count=4, rtt_sum_ms=180, rtt_max_ms=90, reconnects=1
    )
    assert (bucket.device_id, bucket.user_id, bucket.ip, bucket.bucket_start) == (
        device.device_id,
        user.id,
        device.ip,
        T0,
    )


async def test_flush_keys_buckets_by_device_start_and_ip(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    await storage.uptime.add_uptime(
        [
            delta(device, T0, 100),
            delta(device, T0, 50, ip="198.51.100.1"),
            delta(device, T0 + HOUR, 7),
        ]
    )
    assert [(b.ip, b.stats.seconds) for b in (await storage.uptime.list_buckets(T0)).items] == [
        ("198.51.100.1", 50),
        ("203.0.113.1", 100),
    ]
    assert await storage.uptime.bucket_starts() == [T0, T0 + HOUR]
    assert await storage.uptime.bucket_starts(since=T0 + HOUR) == [T0 + HOUR]
    assert await storage.uptime.bucket_starts(until=T0 + HOUR) == [T0]


async def test_flush_skips_unknown_devices(storage):
    user = await add_user(storage)
    known = await add_device(storage, user)
    ghost = make_device(user)
    result = await storage.uptime.add_uptime([delta(known), delta(ghost), delta(ghost, at(1))])
    assert result.applied == 1
    assert result.unknown_devices == frozenset({ghost.device_id})
    assert (await storage.uptime.uptime_stats()).seconds == 60


async def test_a_delta_of_another_user_is_not_applied(storage):
    """Points go to the device's owner only: a delta naming another user for the device is
    skipped and reported (it used to move the whole bucket, seconds and all, to that user)."""
    user = await add_user(storage)
    device = await add_device(storage, user)
    await storage.uptime.add_uptime([delta(device)])
    other = await add_user(storage)
    d = delta(device)
    stolen = type(d)(**{**_fields(d), "user_id": other.id})
    result = await storage.uptime.add_uptime([stolen, delta(device, seconds=5)])
    assert result.applied == 1
    assert result.foreign_devices == frozenset({device.device_id})
    assert result.unknown_devices == frozenset()
    (bucket,) = (await storage.uptime.list_buckets(T0)).items
    assert bucket.user_id == user.id
    assert bucket.stats.seconds == 65
    assert (await storage.uptime.uptime_stats(user_id=other.id)).seconds == 0
    assert await storage.uptime.uptime_by_user([user.id, other.id]) == {
        user.id: UptimeStats(seconds=65)
    }
    assert (await storage.devices.get_device(device.device_id)).user_id == user.id


def _fields(value):
    return {f: getattr(value, f) for f in ("device_id", "user_id", "ip", "bucket_start", "stats")}


async def test_list_buckets_pages(storage):
    users = [await add_user(storage) for _ in range(3)]
    devices = [await add_device(storage, users[i % 3], ip=f"203.0.113.{i % 4}") for i in range(9)]
    await storage.uptime.add_uptime([delta(d, T0, 10 + i) for i, d in enumerate(devices)])
    await storage.uptime.add_uptime([delta(devices[0], T0 + HOUR, 1)])
    buckets = await collect(lambda **kw: storage.uptime.list_buckets(T0, **kw), limit=4)
    assert [(b.ip, b.device_id) for b in buckets] == sorted((d.ip, d.device_id) for d in devices)
    assert (await storage.uptime.list_buckets(T0 - HOUR)).items == ()
    with pytest.raises(InvalidPage):
        await storage.uptime.list_buckets(T0, cursor="not a cursor")
    with pytest.raises(InvalidPage):
        await storage.uptime.list_buckets(T0, limit=0)


async def _three_device_setup(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    a = await add_device(storage, user, ip="203.0.113.1")
    b = await add_device(storage, user, ip="203.0.113.2")
    c = await add_device(storage, other, ip="203.0.113.1")
    await storage.uptime.add_uptime(
        [
            delta(a, at(0), 3600, rtt_count=2, rtt_sum_ms=100, rtt_max_ms=60),
            delta(a, at(1), 1800, reconnects=2),
            delta(a, at(1), 600, ip="203.0.113.2"),
            delta(b, at(0), 1200, rtt_count=1, rtt_sum_ms=10, rtt_max_ms=10),
            delta(c, at(0), 3000),
        ]
    )
    return user, other, a, b, c


async def test_uptime_stats_filters(storage):
    user, other, a, _b, _ = await _three_device_setup(storage)
    assert (await storage.uptime.uptime_stats()).seconds == 10200
    assert await storage.uptime.uptime_stats(user_id=user.id) == UptimeStats(
        seconds=7200, rtt_count=3, rtt_sum_ms=110, rtt_max_ms=60, reconnects=2
    )
    assert (await storage.uptime.uptime_stats(device_id=a.device_id)).seconds == 6000
    assert (await storage.uptime.uptime_stats(ip="203.0.113.1")).seconds == 3600 + 1800 + 3000
    assert (
        await storage.uptime.uptime_stats(user_id=user.id, ip="203.0.113.2", since=at(1))
    ).seconds == 600
    assert (await storage.uptime.uptime_stats(user_id=user.id, until=at(1))).seconds == 4800
    assert (
        await storage.uptime.uptime_stats(user_id=other.id, device_id=a.device_id) == UptimeStats()
    )


async def test_uptime_by_device_ip_and_user(storage):
    user, other, a, b, _c = await _three_device_setup(storage)
    by_device = await storage.uptime.uptime_by_device(user.id)
    assert {k: v.seconds for k, v in by_device.items()} == {a.device_id: 6000, b.device_id: 1200}
    since = await storage.uptime.uptime_by_device(user.id, since=at(1))
    assert {k: v.seconds for k, v in since.items()} == {a.device_id: 2400}

    mine = await storage.uptime.uptime_by_ip(user_id=user.id)
    assert {k: v.seconds for k, v in mine.items()} == {"203.0.113.1": 5400, "203.0.113.2": 1800}
    everyone = await storage.uptime.uptime_by_ip(until=at(1))
    assert {k: v.seconds for k, v in everyone.items()} == {"203.0.113.1": 6600, "203.0.113.2": 1200}

    per_user = await storage.uptime.uptime_by_user([user.id, other.id, "nobody-xxxxxxxxxxxxxx"])
    assert {k: v.seconds for k, v in per_user.items()} == {user.id: 7200, other.id: 3000}


async def test_uptime_series_in_utc_and_local_time(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    # 22:00 and 23:00 UTC on Sunday 3 March, 00:00 on Monday 4 March.
    await storage.uptime.add_uptime(
        [delta(device, T0 - 2 * HOUR, 100), delta(device, T0 - HOUR, 200), delta(device, T0, 400)]
    )
    days = await storage.uptime.uptime_series(user.id, period=Period.DAY)
    assert days == [
        PeriodTotal(start=T0 - dt.timedelta(days=1), value=300),
        PeriodTotal(start=T0, value=400),
    ]
    # Paris is UTC+1 in March: 22:00 UTC is Sunday 23:00, 23:00 UTC is already Monday.
    paris = await storage.uptime.uptime_series(user.id, period=Period.DAY, tz="Europe/Paris")
    assert paris == [
        PeriodTotal(start=T0 - dt.timedelta(days=1, hours=1), value=100),
        PeriodTotal(start=T0 - HOUR, value=600),
    ]
    # New York is UTC-5: 22:00 UTC is 17:00 on Sunday, local week starts Monday 26 February.
    weeks = await storage.uptime.uptime_series(user.id, period=Period.WEEK, tz="America/New_York")
    assert weeks == [PeriodTotal(start=dt.datetime(2024, 2, 26, 5, tzinfo=dt.UTC), value=700)]
    utc_weeks = await storage.uptime.uptime_series(user.id, period=Period.WEEK)
    assert utc_weeks == [
        PeriodTotal(start=dt.datetime(2024, 2, 26, tzinfo=dt.UTC), value=300),
        PeriodTotal(start=T0, value=400),
    ]
    months = await storage.uptime.uptime_series(user.id, period=Period.MONTH, tz="Asia/Tokyo")
    assert months == [PeriodTotal(start=dt.datetime(2024, 2, 29, 15, tzinfo=dt.UTC), value=700)]
    hours = await storage.uptime.uptime_series(
        user.id, period=Period.HOUR, since=T0 - HOUR, device_id=device.device_id
    )
    assert hours == [PeriodTotal(start=T0 - HOUR, value=200), PeriodTotal(start=T0, value=400)]
    assert (
        await storage.uptime.uptime_series(user.id, period=Period.HOUR, device_id=new_uuid()) == []
    )


async def test_uptime_series_rejects_unknown_timezone(storage):
    user = await add_user(storage)
    with pytest.raises(ValueError, match="time zone"):
        await storage.uptime.uptime_series(user.id, period=Period.DAY, tz="Mars/Olympus")


async def test_uptime_by_epoch(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    for number in (1, 2):
        await storage.epochs.create_epoch(
            Epoch(number=number, name=f"E{number}", start=at(10 * number), end=at(10 * number + 10))
        )
    await storage.uptime.add_uptime(
        [delta(device, at(h), 100 + h) for h in (5, 10, 19, 20, 29, 30)]
    )
    assert await storage.uptime.uptime_by_epoch(user.id) == [
        EpochTotal(epoch=1, value=110 + 119),
        EpochTotal(epoch=2, value=120 + 129),
    ]
