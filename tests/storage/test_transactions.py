"""Units of work: writes across stores commit together or not at all."""

from __future__ import annotations

import contextlib

import pytest
import trio

from grass.errors import StorageConflict, TransactionAborted
from tests.storage.conftest import add_user, delta, make_device, make_entry, make_user


class Boom(Exception):
    pass


async def _write_everything(tx, user):
    await tx.users.create_user(user)
    device = make_device(user)
    await tx.devices.create_device(device)
    await tx.uptime.add_uptime([delta(device, seconds=30)])
    entry = make_entry(user)
    await tx.earnings.insert_earnings([entry])
    return device, entry


async def _assert_absent(storage, user, device, entry):
    assert await storage.users.find_user_by_email(user.email) is None
    assert await storage.devices.find_device(device.device_id) is None
    assert (await storage.uptime.uptime_stats()).seconds == 0
    assert await storage.earnings.find_earning(entry.idempotency_key) is None


async def test_commit_across_stores(storage):
    user = make_user()
    async with storage.transaction() as tx:
        device, entry = await _write_everything(tx, user)
        # A unit of work reads its own writes.
        assert await tx.users.get_user(user.id) == user
        assert (await tx.uptime.uptime_stats(user_id=user.id)).seconds == 30
    assert await storage.users.get_user(user.id) == user
    assert await storage.devices.get_device(device.device_id) == device
    assert (await storage.uptime.uptime_stats()).seconds == 30
    assert await storage.earnings.find_earning(entry.idempotency_key) == entry


async def test_exception_rolls_everything_back(storage):
    kept = await add_user(storage)
    user = make_user()
    written = []

    async def work():
        async with storage.transaction() as tx:
            written.extend(await _write_everything(tx, user))
            await tx.users.delete_user(kept.id)
            raise Boom

    with pytest.raises(Boom):
        await work()
    device, entry = written
    await _assert_absent(storage, user, device, entry)
    assert await storage.users.get_user(kept.id) == kept


async def test_failed_operation_dooms_the_unit_of_work(storage):
    taken = await add_user(storage)
    user = make_user()
    written = []

    async def work():
        async with storage.transaction() as tx:
            written.extend(await _write_everything(tx, user))
            with pytest.raises(StorageConflict):
                await tx.users.create_user(make_user(email=taken.email))
            with pytest.raises(TransactionAborted):
                await tx.users.get_user(user.id)

    with pytest.raises(TransactionAborted):
        await work()
    device, entry = written
    await _assert_absent(storage, user, device, entry)


async def test_swallowed_failure_still_rolls_back(storage):
    taken = await add_user(storage)
    user = make_user()
    written = []

    async def work():
        async with storage.transaction() as tx:
            written.extend(await _write_everything(tx, user))
            with contextlib.suppress(StorageConflict):
                await tx.users.create_user(make_user(referral_code=taken.referral_code))

    with pytest.raises(TransactionAborted):
        await work()
    device, entry = written
    await _assert_absent(storage, user, device, entry)


async def test_cancellation_rolls_back(storage):
    user = make_user()
    with trio.CancelScope() as scope:
        async with storage.transaction() as tx:
            device, entry = await _write_everything(tx, user)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    await _assert_absent(storage, user, device, entry)


async def test_others_never_see_a_rolled_back_write(storage):
    user = make_user()
    seen = []

    async def reader():
        seen.append(await storage.users.find_user_by_email(user.email))

    async def work(nursery):
        async with storage.transaction() as tx:
            await tx.users.create_user(user)
            nursery.start_soon(reader)
            for _ in range(10):
                await trio.lowlevel.checkpoint()
            raise Boom

    async with trio.open_nursery() as nursery:
        with pytest.raises(Boom):
            await work(nursery)
    assert seen == [None]


async def test_units_of_work_one_after_another(storage):
    users = [make_user() for _ in range(5)]

    async def register(user):
        async with storage.transaction() as tx:
            await tx.users.create_user(user)
            await trio.lowlevel.checkpoint()
            await tx.devices.create_device(make_device(user))

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(register, user)
    for user in users:
        assert await storage.devices.count_devices(user.id) == 1
