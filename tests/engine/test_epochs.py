"""Epochs on every backend: rows only where there is activity, no empty settlements, no close
before its last bucket's uptime is in, any number of open epochs, concurrent creation."""

from __future__ import annotations

import datetime as dt

import attrs
import trio

from grass.domain.epochs import Epoch, EpochStatus
from grass.ledger.memory import open_memory_ledger
from grass.services import epochs as epochs_module
from grass.services.epochs import EpochService
from tests.engine.helpers import Clock, build, engine_config
from tests.engine.test_closer import IP1, score
from tests.storage.conftest import T0, add_device, add_user, delta

MINUTE = dt.timedelta(minutes=1)


def demo_config(**closer):
    """One-minute buckets and epochs, from the default genesis (2024-01-01): T0 is epoch
    ~90 000."""
    base = engine_config(bucket_seconds=60, epoch_seconds=60)
    defaults = {"delay": 30.0, "correction_window": 3600.0}
    return attrs.evolve(base, closer=attrs.evolve(base.closer, **(defaults | closer)))


async def statuses(storage):
    epochs = []
    cursor = None
    while True:
        page = await storage.epochs.list_epochs(cursor=cursor, limit=500)
        epochs.extend(page.items)
        if (cursor := page.next_cursor) is None:
            return sorted((e.number, e.status) for e in epochs)


async def _scored_device(storage, *uptime_of):
    """A user with one device on IP1 at score 100, and that device's uptime (start, seconds)."""
    user = await add_user(storage)
    device = await add_device(storage, user, ip=IP1)
    await storage.devices.set_scores({device.device_id: score(100)})
    await storage.uptime.add_uptime([delta(device, start, seconds) for start, seconds in uptime_of])
    return user, device


async def test_a_fresh_install_with_short_epochs_creates_and_settles_only_what_has_data(storage):
    config = demo_config()
    user, _ = await _scored_device(storage, (T0, 60))
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, config, Clock(T0 + 2 * MINUTE))
        number = e.epochs.number_at(T0)
        assert number > 90_000
        await e.closer.tick()
        # Ten idle minutes later: the one epoch with a bucket is settled, nothing else exists.
        for _ in range(10):
            e.clock.now += MINUTE
            await e.closer.tick()
        assert await statuses(storage) == [(number, EpochStatus.SETTLED)]
        assert [s.epoch for s in await ledger.settlements()] == [number]
        assert (await ledger.balance(user.id)).settled == 1_000_000 // 60


async def test_an_epoch_closes_only_after_its_last_bucket_had_time_to_be_written(storage):
    base = demo_config(delay=40.0)
    config = attrs.evolve(base, rates=attrs.evolve(base.rates, epoch_seconds=120))
    user, device = await _scored_device(storage, (T0, 60))
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, config, Clock(T0 + 2 * MINUTE + dt.timedelta(seconds=35)))
        number = e.epochs.number_at(T0)
        assert e.epochs.bounds(number) == (T0, T0 + 2 * MINUTE)
        # The first bucket is closed; the second (the epoch's last) holds no uptime yet as
        # far as storage knows (a session has not flushed): 35 s after the end, less than the
        # delay, the epoch stays open.
        await e.closer.tick()
        assert (await storage.epochs.get_epoch(number)).status is EpochStatus.OPEN
        await storage.uptime.add_uptime([delta(device, T0 + MINUTE, 30)])  # the last flush
        e.clock.now += dt.timedelta(seconds=10)
        await e.closer.tick()
        epoch = await storage.epochs.get_epoch(number)
        assert epoch.status is EpochStatus.SETTLED
        assert epoch.totals is not None
        points = 1_000_000 // 60 + 1_000_000 // 120
        assert (epoch.totals.points, epoch.totals.uptime_seconds) == (points, 90)
        assert (await ledger.balance(user.id)).settled == points


async def test_every_due_epoch_is_seen_however_many_are_open(storage, monkeypatch):
    # Pages of 3 (of 1 000 in production): 10 open epochs are four pages, the oldest last.
    monkeypatch.setattr(epochs_module, "PAGE_SIZE", 3)
    config = engine_config(epoch_seconds=3600)
    async with open_memory_ledger() as ledger:
        epochs = EpochService(storage, ledger, lambda: config)
        first = epochs.number_at(T0)
        for number in range(first, first + 10):
            start, end = epochs.bounds(number)
            await storage.epochs.create_epoch(
                Epoch(number=number, name=f"Epoch {number}", start=start, end=end)
            )

        async def all_closed(since, until):
            await trio.lowlevel.checkpoint()
            return True

        now = epochs.bounds(first + 10)[0] + dt.timedelta(hours=1)
        done = await epochs.close_due(now, all_closed)
        assert done == list(range(first, first + 10))
        assert await ledger.settlements() == []  # all empty: nothing anchored


async def test_two_instances_ensuring_one_epoch_at_once_agree(storage):
    config = engine_config()
    async with open_memory_ledger() as ledger:
        services = [EpochService(storage, ledger, lambda: config) for _ in range(4)]
        number = services[0].number_at(T0)
        got = []

        async def ensure(service):
            got.append(await service.ensure(number))

        async with trio.open_nursery() as nursery:
            for service in services:
                nursery.start_soon(ensure, service)
        assert len(got) == 4
        assert len({(e.number, e.start, e.end) for e in got}) == 1
        assert await statuses(storage) == [(number, EpochStatus.OPEN)]


async def test_crediting_asks_the_journal_not_the_anchor(storage, monkeypatch):
    """Every close asks whether its epoch still takes credits; with a chain anchor, asking the
    anchor for every settled epoch's reference made each close depend on the chain (and cost
    one call per epoch ever settled)."""
    config = demo_config()
    user, device = await _scored_device(storage, (T0, 60))
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, config, Clock(T0 + 2 * MINUTE))
        for _ in range(3):
            await e.closer.tick()
            e.clock.now += MINUTE
        assert await ledger.latest_settlement() == e.epochs.number_at(T0)

        async def chain_down(epoch: int) -> str | None:
            raise ConnectionError("the chain does not answer")

        monkeypatch.setattr(ledger.anchor, "ref", chain_down)
        await storage.uptime.add_uptime([delta(device, e.clock.now - MINUTE, 60)])
        e.clock.now += MINUTE
        await e.closer.tick()
        balance = await ledger.balance(user.id)
        assert balance.settled + balance.pending == 2 * (1_000_000 // 60)


DAY = dt.timedelta(days=1)


def weekly_config():
    """The default 7-day epochs and 3-day correction window, epoch 0 starting at T0."""
    return engine_config(epoch_genesis=int(T0.timestamp()))


async def test_late_uptime_past_the_window_does_not_hold_epochs_open_for_ever(storage):
    user, device = await _scored_device(storage, (T0, 3600), (T0 + 8 * DAY, 60))
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, weekly_config(), Clock(T0 + dt.timedelta(minutes=70)))
        await e.closer.tick()
        assert (await ledger.balance(user.id)).total == 1_000_000
        # 60 s of bucket T0 written 4 days later: past the window, reported and never paid.
        await storage.uptime.add_uptime([delta(device, T0, 60)])
        e.clock.now = T0 + 4 * DAY
        await e.closer.tick()
        e.clock.now = T0 + 8 * DAY + dt.timedelta(minutes=70)  # closes the bucket of day 8
        await e.closer.tick()
        e.clock.now = T0 + 9 * DAY
        await e.closer.tick()
        assert (await storage.epochs.get_epoch(0)).status is EpochStatus.SETTLED
        assert (await storage.epochs.get_epoch(0)).totals.points == 1_000_000
        e.clock.now = T0 + 16 * DAY
        await e.closer.tick()
        assert (await storage.epochs.get_epoch(1)).status is EpochStatus.SETTLED
        assert [s.epoch for s in await ledger.settlements()] == [0, 1]
        assert (await ledger.balance(user.id)).settled == 1_000_000 + 1_000_000 // 60
        assert (await ledger.balance(user.id)).total == 1_000_000 + 1_000_000 // 60


async def test_a_closer_down_longer_than_the_window_does_not_stop_settlement(storage):
    user, _ = await _scored_device(storage, (T0, 3600), (T0 + 3 * DAY, 60))
    async with open_memory_ledger() as ledger:
        # First tick 4 days after bucket T0 ended: it left the window unpaid (reported).
        e = build(storage, ledger, weekly_config(), Clock(T0 + 4 * DAY))
        await e.closer.tick()
        e.clock.now = T0 + 9 * DAY
        await e.closer.tick()
        epoch = await storage.epochs.get_epoch(0)
        assert epoch.status is EpochStatus.SETTLED
        assert epoch.totals.points == 1_000_000 // 60  # the bucket of day 3 only
        assert (await ledger.balance(user.id)).settled == 1_000_000 // 60
