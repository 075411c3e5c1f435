"""The uptime flusher: one batch per store per flush, retries, rows a store refuses."""

from __future__ import annotations

import uuid

import trio

from grass.domain.devices import DeviceStatus
from grass.domain.uptime import Accrual, UptimeFlushResult
from grass.errors import InvalidValue, StorageUnavailable
from grass.metrics import Metrics
from grass.services import flusher as flusher_module
from grass.services.flusher import COLLECT_SLICE, UptimeFlusher
from grass.storage.memory import MemoryStorage
from tests.domain.test_uptime import T0, accrual
from tests.storage.conftest import make_user


class RecordingStores:
    """Counts calls and fails on demand, in front of the memory backend."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage
        self.upserts: list[int] = []
        self.adds: list[int] = []
        self.fail_upsert = 0
        self.fail_add = 0

    async def upsert_devices(self, devices):
        if self.fail_upsert:
            self.fail_upsert -= 1
            raise StorageUnavailable("down")
        self.upserts.append(len(devices))
        await self.storage.devices.upsert_devices(devices)

    async def add_uptime(self, deltas) -> UptimeFlushResult:
        if self.fail_add:
            self.fail_add -= 1
            raise StorageUnavailable("down")
        self.adds.append(len(deltas))
        return await self.storage.uptime.add_uptime(deltas)


async def users(storage: MemoryStorage, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        user = make_user()
        await storage.users.create_user(user)
        ids.append(user.id)
    return ids


async def test_one_batch_call_per_store_per_flush():
    storage = MemoryStorage()
    stores = RecordingStores(storage)
    flusher = UptimeFlusher(stores, stores, interval=lambda: 5.0)
    user_ids = await users(storage, 3)
    accruals = [accrual(T0, user_id=u) for u in user_ids]
    for a in accruals:
        flusher.add(a)
        a.heartbeat(T0 + 60)
    result = await flusher.flush_now()
    assert stores.upserts == [3]
    assert stores.adds == [3]
    assert result is not None
    assert result.applied == 3
    for a in accruals:
        stats = await storage.uptime.uptime_stats(device_id=a.device_id)
        assert stats.seconds == 60
        device = await storage.devices.get_device(a.device_id)
        assert device.status is DeviceStatus.ONLINE
        assert device.ip == "203.0.113.9"
        assert a.saved


async def test_a_failed_flush_keeps_everything_once():
    storage = MemoryStorage()
    stores = RecordingStores(storage)
    flusher = UptimeFlusher(stores, stores, interval=lambda: 5.0)
    [user_id] = await users(storage, 1)
    a = accrual(T0, user_id=user_id)
    flusher.add(a)
    a.heartbeat(T0 + 60)
    stores.fail_add = 1
    assert await flusher.flush_now() is None
    assert flusher.pending == 1
    assert flusher.failures == 1
    a.heartbeat(T0 + 120)
    stores.fail_upsert = 1
    assert await flusher.flush_now() is None
    a.heartbeat(T0 + 180)
    flusher.retire(a)
    await flusher.flush_now()
    await flusher.flush_now()  # nothing left: no second write
    stats = await storage.uptime.uptime_stats(device_id=a.device_id)
    assert stats.seconds == 180
    assert flusher.pending == 0
    device = await storage.devices.get_device(a.device_id)
    assert device.status is DeviceStatus.OFFLINE


async def test_a_replaced_session_leaves_the_device_online():
    storage = MemoryStorage()
    flusher = UptimeFlusher(storage.devices, storage.uptime, interval=lambda: 5.0)
    [user_id] = await users(storage, 1)
    device_id = str(uuid.uuid4())
    old = accrual(T0, user_id=user_id, device_id=device_id)
    flusher.add(old)
    await flusher.flush_now()
    new = accrual(T0 + 10, user_id=user_id, device_id=device_id, ip="203.0.113.10")
    flusher.add(new)
    flusher.retire(old)
    await flusher.flush_now()
    device = await storage.devices.get_device(device_id)
    assert device.status is DeviceStatus.ONLINE
    assert device.ip == "203.0.113.10"


async def test_the_flusher_task_writes_every_interval(autojump_clock):
    storage = MemoryStorage()
    flusher = UptimeFlusher(storage.devices, storage.uptime, interval=lambda: 5.0)
    [user_id] = await users(storage, 1)
    a = accrual(T0, user_id=user_id)
    flusher.add(a)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        a.heartbeat(T0 + 30)
        await trio.sleep(5.5)
        assert flusher.flushes == 1
        assert (await storage.uptime.uptime_stats(device_id=a.device_id)).seconds == 30
        nursery.cancel_scope.cancel()


class CancelsWhenTaken(Accrual):
    """Cancels ``scope`` when the flusher takes it: the flush's next checkpoint raises."""

    scope: trio.CancelScope

    def take(self):
        self.scope.cancel()
        return super().take()


async def test_a_flush_cancelled_while_collecting_loses_and_repeats_nothing():
    """Cancelled at its first checkpoint (a shutdown cancels the flusher while it flushes), a
    flush keeps every retired session it had not taken yet: the next one writes them all."""
    storage = MemoryStorage()
    stores = RecordingStores(storage)
    flusher = UptimeFlusher(stores, stores, interval=lambda: 5.0)
    [user_id] = await users(storage, 1)
    count = 600
    assert count > 2 * COLLECT_SLICE
    scope = trio.CancelScope()
    accruals = [
        accrual(T0, user_id=user_id, cls=CancelsWhenTaken if i == 0 else Accrual)
        for i in range(count)
    ]
    accruals[0].scope = scope
    for a in accruals:
        flusher.add(a)
        a.heartbeat(T0 + 60)
        flusher.retire(a)
    with scope:
        await flusher.flush_now()
    assert scope.cancelled_caught
    assert stores.upserts == stores.adds == []
    await flusher.flush_now()
    await flusher.flush_now()  # nothing left: no second write
    assert stores.upserts == stores.adds == [count]
    for a in accruals:
        assert (await storage.uptime.uptime_stats(device_id=a.device_id)).seconds == 60
        device = await storage.devices.get_device(a.device_id)
        assert device.status is DeviceStatus.OFFLINE


# -- rows a store refuses for their content -----------------------------------------------------


class Warnings:
    """Stands for the module's logger: the warnings it was given."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def warning(self, event: str, **fields: object) -> None:
        self.events.append({"event": event, **fields})


async def test_a_refused_device_row_is_dropped_and_every_other_row_written_once(
    storage, monkeypatch
):
    """One node's device row that the store cannot take (a lone surrogate in its version: on
    PostgreSQL it failed every flush, retried forever as one batch) is dropped, counted and
    logged once; every other device's row and uptime are written, exactly once, in every
    flush, the final one included."""
    metrics = Metrics()
    flusher = UptimeFlusher(storage.devices, storage.uptime, interval=lambda: 5.0, metrics=metrics)
    user = make_user()
    await storage.users.create_user(user)
    accruals = [accrual(T0, user_id=user.id) for _ in range(6)]
    bad = accrual(T0, user_id=user.id, version="4\udfff")
    accruals.insert(3, bad)
    logged = Warnings()
    monkeypatch.setattr(flusher_module, "log", logged)
    for minute in (1, 2, 3):
        for a in accruals:
            flusher.add(a)
            a.heartbeat(T0 + 60 * minute)
        result = await flusher.flush_now()
        assert result is not None
        assert result.applied == 6
        assert result.unknown_devices == {bad.device_id}  # its uptime has no device
    for a in accruals:
        flusher.retire(a)
    assert await flusher.flush_now() is not None  # the final flush, at shutdown
    assert flusher.pending == 0
    assert flusher.failures == 0
    for a in accruals:
        if a is bad:
            assert await storage.devices.find_device(a.device_id) is None
            continue
        assert (await storage.uptime.uptime_stats(device_id=a.device_id)).seconds == 180
        assert (await storage.devices.get_device(a.device_id)).status is DeviceStatus.OFFLINE
        assert a.saved
    assert not bad.saved
    refused = [e for e in logged.events if e["event"] == "row refused; dropped"]
    assert [(e["batch"], e["device_id"]) for e in refused] == [("devices", bad.device_id)]
    assert "\udfff" not in refused[0]["error"]
    assert flusher.rows_refused == 1
    assert metrics.rows_refused.labels("devices")._value.get() == 1


class RefusingStores(RecordingStores):
    """Refuses (atomically) any batch holding a delta of ``bad``, like a store refusing a
    row's content; counts the deltas written per device."""

    def __init__(self, storage: MemoryStorage, bad: set[str]) -> None:
        super().__init__(storage)
        self.bad = bad
        self.written: dict[str, int] = {}

    async def add_uptime(self, deltas) -> UptimeFlushResult:
        if self.fail_add:
            self.fail_add -= 1
            raise StorageUnavailable("down")
        self.adds.append(len(deltas))
        if self.bad & {d.device_id for d in deltas}:
            raise InvalidValue("cannot store text that UTF-8 cannot encode")
        for d in deltas:
            self.written[d.device_id] = self.written.get(d.device_id, 0) + 1
        return await self.storage.uptime.add_uptime(deltas)


async def test_a_refused_uptime_row_is_isolated_and_an_outage_meanwhile_loses_nothing():
    storage = MemoryStorage()
    [user_id] = await users(storage, 1)
    accruals = [accrual(T0, user_id=user_id) for _ in range(40)]
    bad = {accruals[7].device_id, accruals[30].device_id}
    stores = RefusingStores(storage, bad)
    metrics = Metrics()
    flusher = UptimeFlusher(stores, stores, interval=lambda: 5.0, metrics=metrics)
    for a in accruals:
        flusher.add(a)
        a.heartbeat(T0 + 60)
    await flusher.flush_now()  # the rows first (all taken), then the deltas by halves
    stores.fail_add = 0
    assert stores.adds[0] == 40
    assert len(stores.adds) <= 1 + 2 * 2 * 6  # halves around two rows, not row by row
    assert stores.written == {a.device_id: 1 for a in accruals if a.device_id not in bad}
    assert flusher.pending == 0
    assert metrics.rows_refused.labels("uptime")._value.get() == 2

    # An outage half way: what was written stays written, the rest goes next time.
    for a in accruals:
        a.heartbeat(T0 + 120)
    stores.adds.clear()
    real = RefusingStores.add_uptime
    wrote = False

    async def down_after_a_write(self, deltas):
        nonlocal wrote
        if wrote:
            raise StorageUnavailable("down")
        result = await real(self, deltas)
        wrote = True
        return result

    stores.add_uptime = down_after_a_write.__get__(stores)  # type: ignore[method-assign]
    assert await flusher.flush_now() is None
    assert 0 < flusher.pending < 40
    stores.add_uptime = real.__get__(stores)  # type: ignore[method-assign]
    assert await flusher.flush_now() is not None
    assert flusher.pending == 0
    for a in accruals:
        stats = await storage.uptime.uptime_stats(device_id=a.device_id)
        assert stats.seconds == (0 if a.device_id in bad else 120), a.device_id
    assert metrics.rows_refused.labels("uptime")._value.get() == 4


async def test_a_row_of_a_device_owned_by_another_user_does_not_block_the_flush():
    """Two instances may each let one device id in under two users before either wrote it
    (the registry and the stored row refuse it otherwise): the row written second is refused
    by storage, and it alone must be dropped, not every device's uptime held back forever."""
    storage = MemoryStorage()
    here = UptimeFlusher(storage.devices, storage.uptime, interval=lambda: 5.0)
    there = UptimeFlusher(storage.devices, storage.uptime, interval=lambda: 5.0)
    owner, other, third = await users(storage, 3)
    contested = str(uuid.uuid4())
    there.add(accrual(T0, user_id=owner, device_id=contested))
    await there.flush_now()  # the other instance wrote it first
    second = accrual(T0, user_id=other, device_id=contested)
    fine = accrual(T0, user_id=third)
    for a in (second, fine):
        here.add(a)
        a.heartbeat(T0 + 60)
    assert await here.flush_now() is not None
    assert here.pending == 0
    assert (await storage.devices.get_device(contested)).user_id == owner
    assert (await storage.uptime.uptime_stats(device_id=fine.device_id)).seconds == 60
    # The refused row's uptime went with it: nothing lands on the owner's device.
    assert (await storage.uptime.uptime_stats(device_id=contested)).seconds == 0
