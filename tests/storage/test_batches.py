"""Large batch writes: the rest of the process runs while one is written, and a batch cancelled
part way leaves nothing behind (every backend)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from grass.domain import payouts as rules
from grass.domain.devices import Device
from grass.domain.earnings import EarningSource
from grass.storage.abc import Storage
from grass.storage.memory import MemoryStorage
from grass.storage.payouts import BucketClose, KeyedPayout
from tests.storage.conftest import HOUR, T0, add_user, delta, make_device, make_entry

ROWS = 3_000

Batch = Callable[[Storage, list[Device]], Awaitable[object]]


async def _devices(storage: Storage, devices: list[Device]) -> object:
    return await storage.devices.upsert_devices(devices)


async def _uptime(storage: Storage, devices: list[Device]) -> object:
    return await storage.uptime.add_uptime([delta(d) for d in devices])


async def _earnings(storage: Storage, devices: list[Device]) -> object:
    return await storage.earnings.insert_earnings([make_entry(d.user_id) for d in devices])


async def _payouts(storage: Storage, devices: list[Device]) -> object:
    """A bucket close: one uptime entry per device, in one unit with the close record."""
    close = BucketClose(bucket_start=T0, revision=0, seconds=60 * ROWS, closed_at=T0 + HOUR)
    payouts = [
        KeyedPayout(
            key=rules.bucket_key(T0, 0, d.device_id),
            payout=rules.Payout(
                user_id=d.user_id,
                source=EarningSource.UPTIME,
                amount=1_000,
                device_id=d.device_id,
                ip=d.ip,
            ),
        )
        for d in devices
    ]
    return await storage.payouts.record_payouts(close, payouts, accrued_at=T0)


async def _rows(storage: Storage, batch: Batch, user_id: str) -> int:
    if batch is _devices:
        return await storage.devices.count_devices(user_id)
    if batch is _uptime:
        return (await storage.uptime.uptime_stats(user_id=user_id)).seconds // 60
    return (await storage.earnings.earnings_totals(user_id=user_id)).total // 1_000


BATCHES = [
    pytest.param(b, id=b.__name__.strip("_")) for b in (_devices, _uptime, _earnings, _payouts)
]


async def _prepare(storage: Storage, batch: Batch) -> tuple[str, list[Device]]:
    user = await add_user(storage)
    devices = [make_device(user) for _ in range(ROWS)]
    if batch is not _devices:
        await storage.devices.upsert_devices(devices)
    return user.id, devices


@pytest.mark.parametrize("batch", BATCHES)
async def test_other_tasks_run_while_a_batch_is_written(storage, batch):
    user_id, devices = await _prepare(storage, batch)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()  # the ticker starts
        before = ticks
        await batch(storage, devices)
        done = True
    assert ticks - before >= 3
    assert await _rows(storage, batch, user_id) == ROWS


@pytest.mark.parametrize("batch", BATCHES)
async def test_a_batch_cancelled_part_way_writes_nothing(storage, batch):
    user_id, devices = await _prepare(storage, batch)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_soon() -> None:
                for _ in range(3):
                    await trio.lowlevel.checkpoint()
                scope.cancel()

            nursery.start_soon(cancel_soon)
            await batch(storage, devices)
    assert scope.cancelled_caught
    written = await _rows(storage, batch, user_id)
    # All or nothing; on the memory backend nothing, since the cancel lands mid-batch.
    assert written in (0, ROWS)
    if isinstance(storage, MemoryStorage):
        assert written == 0
    if written == 0:  # the storage is still usable: the same batch goes through afterwards
        await batch(storage, devices)
        assert await _rows(storage, batch, user_id) == ROWS
