"""Epoch history (``series(period=epoch)``): a few grouped reads, not two per epoch, and the same
zero-filled points as reading each epoch on its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from grass.domain.periods import Period
from grass.services.earnings import EarningsService, HistoryPeriod, InvalidRange, SeriesPoint
from grass.services.epochs import EpochService
from tests.engine.helpers import engine_config
from tests.storage.conftest import T0, add_device, add_user, delta, make_entry

MINUTE = dt.timedelta(minutes=1)


class Counting:
    """A store that counts the calls made to it."""

    def __init__(self, store: Any, calls: list[str]) -> None:
        self._store, self._calls = store, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return await method(*args, **kwargs)

        return call


class Stores:
    def __init__(self, storage: Any) -> None:
        self.calls: list[str] = []
        self.users = Counting(storage.users, self.calls)
        self.earnings = Counting(storage.earnings, self.calls)
        self.uptime = Counting(storage.uptime, self.calls)
        self.epochs = Counting(storage.epochs, self.calls)


async def one_by_one(storage, epochs, user_id, since, until, device_id) -> list[SeriesPoint]:
    """The epochs read one at a time (what the service did before)."""
    last = epochs.number_at(until)
    out = []
    for number in range(epochs.number_at(since), last + 1):
        start, end = epochs.bounds(number)
        points = await storage.earnings.earnings_series(
            user_id, period=Period.MONTH, since=start, until=end, device_id=device_id
        )
        uptime = await storage.uptime.uptime_stats(
            user_id=user_id, device_id=device_id, since=start, until=end
        )
        total = sum(p.value for p in points)
        out.append(SeriesPoint(start=start, points=total, uptime_seconds=uptime.seconds))
    return out


@pytest.mark.parametrize(
    "rates",
    [
        {"epoch_seconds": 6 * 3600, "epoch_genesis": int(T0.timestamp())},
        {"epoch_seconds": 2 * 86_400, "epoch_genesis": int(T0.timestamp())},
        # Epochs off the hour: each still read exactly.
        {
            "bucket_seconds": 60,
            "epoch_seconds": 25 * 60,
            "epoch_genesis": int((T0 + 5 * MINUTE).timestamp()),
        },
    ],
)
async def test_epoch_history_matches_epoch_by_epoch(storage, rates):
    config = engine_config(**rates)
    epochs = EpochService(storage, None, lambda: config)
    user = await add_user(storage)
    other = await add_user(storage)
    one, two = await add_device(storage, user), await add_device(storage, user)
    length = dt.timedelta(seconds=rates["epoch_seconds"])
    genesis = epochs.bounds(0)[0]
    times = [genesis - MINUTE, genesis, genesis + 7 * MINUTE, genesis + length - MINUTE]
    times += [genesis + length, genesis + 3 * length + 2 * MINUTE, genesis + 9 * length]
    entries = []
    for i, at in enumerate(times):
        for device, amount in ((one, 1_000 + i), (two, 20 + i), (None, 7)):
            device_id = device.device_id if device else None
            entries.append(make_entry(user, accrued_at=at, amount=amount, device_id=device_id))
        entries.append(make_entry(other, accrued_at=at, amount=999))
    await storage.earnings.insert_earnings(entries)
    buckets = [genesis + i * MINUTE for i in range(0, 40 * 6, 6)] + [genesis - MINUTE]
    await storage.uptime.add_uptime([delta(one, at, 30) for at in buckets])
    await storage.uptime.add_uptime([delta(two, at, 11) for at in buckets[::3]])

    now = genesis + 12 * length
    stores = Stores(storage)
    service = EarningsService(stores, epochs, lambda: now)
    since, until = genesis - 2 * length, genesis + 11 * length + MINUTE
    for device_id in (None, one.device_id, two.device_id, "not-a-device"):
        expected = await one_by_one(storage, epochs, user.id, since, until, device_id)
        assert len(expected) == 12
        stores.calls.clear()
        got = await service.series(
            user.id, HistoryPeriod.EPOCH, since=since, until=until, device_id=device_id
        )
        assert got == expected
        assert len(stores.calls) <= 2 or rates["epoch_seconds"] % 3600, stores.calls

    # The default: the last 8 epochs up to now.
    stores.calls.clear()
    got = await service.series(user.id, HistoryPeriod.EPOCH)
    assert got == await one_by_one(storage, epochs, user.id, now - 7 * length, now, None)


async def test_a_wide_epoch_range_is_two_reads(storage):
    config = engine_config(epoch_seconds=3600, epoch_genesis=int(T0.timestamp()))
    epochs = EpochService(storage, None, lambda: config)
    user = await add_user(storage)
    stores = Stores(storage)
    service = EarningsService(stores, epochs, lambda: T0 + dt.timedelta(days=90))
    got = await service.series(user.id, HistoryPeriod.EPOCH, since=T0)
    assert len(got) == 90 * 24 + 1
    assert stores.calls == ["earnings_series", "uptime_series"]


async def test_an_empty_epoch_range_is_refused_like_the_other_periods(storage):
    config = engine_config(epoch_seconds=3600, epoch_genesis=int(T0.timestamp()))
    service = EarningsService(storage, EpochService(storage, None, lambda: config), lambda: T0)
    user = await add_user(storage)
    for period in HistoryPeriod:
        for since, until in ((T0, T0), (T0 + MINUTE, T0)):
            with pytest.raises(InvalidRange):
                await service.series(user.id, period, since=since, until=until)
        with pytest.raises(InvalidRange):
            await service.series(user.id, period, since=T0 + MINUTE)  # after now
