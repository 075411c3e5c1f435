"""Corrections on every backend: late uptime is paid at the price its bucket was first paid at,
within ``closer.correction_window``; later uptime is reported, not lost silently; late credits
of a settled epoch survive a crash and a restart in another epoch."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain.devices import DeviceType
from grass.ledger.memory import open_memory_ledger
from grass.metrics import Metrics
from grass.services.closer import BucketCloser
from tests.engine.helpers import Clock, build, engine, engine_config
from tests.engine.test_closer import CLOSE_AT, IP1, score
from tests.storage.conftest import T0, add_device, add_user, delta, make_referral

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


async def one_device(storage, value: int = 80):
    user = await add_user(storage)
    device = await add_device(storage, user, type=DeviceType.DESKTOP, ip=IP1)
    await storage.devices.set_scores({device.device_id: score(value)})
    await storage.uptime.add_uptime([delta(device, T0, 1800)])
    return user, device


async def total(storage, user) -> int:
    return (await storage.earnings.earnings_totals(user_id=user.id)).total


async def test_late_uptime_is_paid_at_the_score_the_bucket_was_first_paid_at(storage):
    user, device = await one_device(storage)
    other = await add_device(storage, user, type=DeviceType.EXTENSION, ip=IP1)
    async with engine(storage, engine_config(), CLOSE_AT) as e:
        await e.closer.tick()
        # 1800 s x 80 x 2.0: 800 000
        assert await total(storage, user) == 800_000
        # A day later the device scores 5 (it went offline); late uptime for T0 arrives for
        # it, and a first line for another device (priced now: its score is 50).
        await storage.devices.set_scores({device.device_id: score(5), other.device_id: score(50)})
        await storage.uptime.add_uptime([delta(device, T0, 1800), delta(other, T0, 3600)])
        # (A closer started a day later: it looks at its whole window at once.)
        await build(storage, e.ledger, engine_config(), Clock(e.clock.now + DAY)).closer.tick()
        # IP1 pool = (3600 x 80 x 2.0 + 3600 x 50 x 1.0) / 360 000 = 2 100 000, shared by
        # uptime 3600:3600 -> 1 050 000 each; the device was paid 800 000: 250 000 more.
        assert await total(storage, user) == 2_100_000
        frozen = {f.device_id: f.score for f in await storage.payouts.frozen_lines(T0)}
        assert frozen == {device.device_id: 80, other.device_id: 50}
        assert (await e.ledger.balance(user.id)).total == 2_100_000


async def test_the_window_is_a_duration_and_later_uptime_is_reported(storage):
    user, device = await one_device(storage)
    base = engine_config(bucket_seconds=60, epoch_seconds=3600)
    config = attrs.evolve(
        base, closer=attrs.evolve(base.closer, delay=30.0, correction_window=3 * 3600.0)
    )
    metrics = Metrics()
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, config, Clock(T0 + dt.timedelta(minutes=2)))
        closer = BucketCloser(
            storage,
            ledger,
            e.scores,
            e.epochs,
            e.closer._lock,
            lambda: config,
            e.clock,
            metrics=metrics,
        )
        await closer.tick()
        paid = await total(storage, user)
        assert paid == 800_000
        # Late uptime 2 h 50 min after its one-minute bucket: 170 buckets later, within the
        # 3 h window (a window of 72 buckets would have dropped it).
        await storage.uptime.add_uptime([delta(device, T0, 60)])
        e.clock.now = T0 + dt.timedelta(hours=2, minutes=50)
        await closer.tick()
        assert await total(storage, user) == paid + 800_000 * 60 // 1800
        paid = await total(storage, user)
        # Past the window: not paid, but counted and logged (once).
        await storage.uptime.add_uptime([delta(device, T0, 90)])
        e.clock.now = T0 + dt.timedelta(hours=3, minutes=30)
        await closer.tick()
        await closer.tick()  # reported once
        assert await total(storage, user) == paid
        unpaid = metrics.registry.get_sample_value("grass_closer_late_uptime_unpaid_seconds_total")
        assert unpaid == 90
        # Its prices are forgotten with it; the one bucket in the window keeps nothing (none).
        assert await storage.payouts.frozen_lines(T0) == []


@pytest.mark.parametrize(
    "crashes",
    [["recorded"], ["ledger"], ["ledger", "finish-statuses"], ["recorded", "finish-credited"]],
)
async def test_late_credits_of_a_settled_epoch_survive_crashes_into_the_next_epoch(
    storage, crashes
):
    user, device = await one_device(storage)
    config = engine_config(epoch_seconds=24 * 3600, epoch_genesis=int(T0.timestamp()))

    class Crash(Exception):
        pass

    async def crash(name, _):
        if crashes and name == crashes[0]:
            raise Crash(crashes.pop(0))

    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, config, Clock(CLOSE_AT))
        await e.closer.tick()
        e.clock.now = T0 + DAY + HOUR  # epoch 0 ended an hour ago: closed and settled
        await e.closer.tick()
        assert (await storage.epochs.get_epoch(0)).status.value == "settled"
        await storage.uptime.add_uptime([delta(device, T0, 900)])
        # The correction's credits go to epoch 1 (closed then); each crash restarts the
        # closer a day later, in the next epoch: the re-run must send the same credits.
        now = e.clock.now
        while crashes:
            crashing = build(storage, ledger, config, Clock(now), step_hook=crash)
            with pytest.raises(Crash):
                await crashing.closer.tick()
            now += DAY
        restarted = build(storage, ledger, config, Clock(now))
        await restarted.closer.tick()
        want = 800_000 + 400_000
        assert await total(storage, user) == want
        assert (await ledger.balance(user.id)).total == want
        assert await storage.payouts.uncredited() == []


async def test_a_milestone_reached_through_late_uptime_in_an_earlier_bucket_is_paid(storage):
    referrer = await add_user(storage)
    referee = await add_user(storage)
    await storage.referrals.add_referrals([make_referral(referrer, referee, 1)])
    device = await add_device(storage, referee, type=DeviceType.EXTENSION, ip=IP1)
    await storage.devices.set_scores({device.device_id: score(100)})
    await storage.uptime.add_uptime([delta(device, T0, 1800), delta(device, T0 + HOUR, 1200)])
    async with engine(storage, engine_config(milestone_hours=1), CLOSE_AT + HOUR) as e:
        await e.closer.tick()  # both buckets: 3000 s in all, short of the hour
        # Uptime 500 000 + 333 333; the referrer's 20 %: 100 000 + 66 666.
        assert await total(storage, referrer) == 166_666
        # 600 s more arrive for the first bucket: 3600 s written, the hour is reached.
        await storage.uptime.add_uptime([delta(device, T0, 600)])
        e.clock.now += dt.timedelta(minutes=5)
        await e.closer.tick()
        # The first bucket now pays 666 666 (20 %: 133 333), and the bonuses once.
        assert await total(storage, referrer) == 133_333 + 66_666 + 2_500_000_000
        assert await total(storage, referee) == 666_666 + 333_333 + 5_000_000_000


async def test_older_late_uptime_is_found_within_a_bucket_length_of_ticks(storage):
    user, device = await one_device(storage)
    await storage.uptime.add_uptime(
        [delta(device, T0 + HOUR * i, 1800) for i in (1, 2)]  # three buckets of 1800 s
    )
    async with engine(storage, engine_config(), CLOSE_AT + 2 * HOUR) as e:
        await e.closer.tick()
        assert await total(storage, user) == 3 * 800_000
        await storage.uptime.add_uptime([delta(device, T0, 900)])  # three buckets back
        # A tick a minute (closer.interval): each looks at the last two buckets and at a
        # slice of the older ones (72 buckets in a window of 3 days: 2 a tick), in turn.
        paid_at = None
        for minute in range(1, 62):
            e.clock.now += dt.timedelta(minutes=1)
            await e.closer.tick()
            if paid_at is None and await total(storage, user) > 3 * 800_000:
                paid_at = minute
        assert paid_at is not None
        assert 1 < paid_at <= 60
        assert await total(storage, user) == 3 * 800_000 + 400_000
