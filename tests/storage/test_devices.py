"""DeviceStore."""

from __future__ import annotations

import attrs
import pytest

from grass.domain.devices import DeviceStatus, DeviceType
from grass.domain.score import NetworkScore, ScoreComponents
from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound
from grass.ids import new_uuid
from tests.storage.conftest import (
    T0,
    add_device,
    add_user,
    at,
    collect,
    delta,
    make_device,
    make_user,
)


def score(value: int) -> NetworkScore:
    parts = ScoreComponents(availability=value, stability=value, latency=value, ip_quality=value)
    return NetworkScore(value=value, components=parts, computed_at=T0)


async def test_device_round_trip(storage):
    user = await add_user(storage)
    device = make_device(
        user,
        type=DeviceType.DESKTOP,
        version="4.30.0",
        user_agent="Mozilla/5.0",
        country="FR",
        status=DeviceStatus.ONLINE,
        name="laptop",
        score=score(80),
        ip="2001:db8::1",
    )
    await storage.devices.create_device(device)
    assert await storage.devices.get_device(device.device_id) == device
    assert await storage.devices.find_device(device.device_id) == device
    assert await storage.devices.find_device(new_uuid()) is None
    with pytest.raises(StorageNotFound):
        await storage.devices.get_device(new_uuid())


async def test_create_device_errors(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    with pytest.raises(StorageConflict):
        await storage.devices.create_device(device)
    with pytest.raises(IntegrityViolation):
        await storage.devices.create_device(make_device(make_user()))


async def test_update_device(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    device = await add_device(storage, user)
    paused = attrs.evolve(device, paused=True, name="kitchen")
    await storage.devices.update_device(paused)
    assert await storage.devices.get_device(device.device_id) == paused
    with pytest.raises(StorageConflict):
        await storage.devices.update_device(attrs.evolve(device, user_id=other.id))
    assert await storage.devices.get_device(device.device_id) == paused
    with pytest.raises(StorageNotFound):
        await storage.devices.update_device(make_device(user))


async def test_upsert_devices_inserts_and_keeps_owner_fields(storage):
    user = await add_user(storage)
    kept = await add_device(storage, user, first_seen=T0, last_seen=T0, score=score(50))
    await storage.devices.update_device(attrs.evolve(kept, paused=True, name="mine"))
    new = make_device(user, first_seen=at(2), last_seen=at(2))
    seen = make_device(
        user,
        device_id=kept.device_id,
        first_seen=at(2),
        last_seen=at(3),
        status=DeviceStatus.ONLINE,
        ip="198.51.100.9",
        version="5.1.0",
        type=DeviceType.DESKTOP,
    )
    older = attrs.evolve(new, last_seen=at(2), version="1")
    newest = attrs.evolve(new, last_seen=at(4), version="2")
    await storage.devices.upsert_devices([seen, older, newest])

    stored = await storage.devices.get_device(kept.device_id)
    assert stored == attrs.evolve(seen, first_seen=T0, paused=True, name="mine", score=score(50))
    assert await storage.devices.get_device(new.device_id) == newest


async def test_upsert_devices_is_atomic(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    theirs = await add_device(storage, other)
    fresh = make_device(user)
    with pytest.raises(StorageConflict):
        await storage.devices.upsert_devices([fresh, attrs.evolve(theirs, user_id=user.id)])
    assert await storage.devices.find_device(fresh.device_id) is None
    assert await storage.devices.get_device(theirs.device_id) == theirs  # the owner stays
    with pytest.raises(IntegrityViolation):
        await storage.devices.upsert_devices([fresh, make_device(make_user())])
    assert await storage.devices.find_device(fresh.device_id) is None


async def test_delete_device_keeps_history(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    await storage.uptime.add_uptime([delta(device, seconds=100)])
    await storage.devices.delete_device(device.device_id)
    assert await storage.devices.find_device(device.device_id) is None
    assert (await storage.uptime.uptime_stats(device_id=device.device_id)).seconds == 100
    with pytest.raises(StorageNotFound):
        await storage.devices.delete_device(device.device_id)


async def test_list_and_count_devices(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    devices = [
        await add_device(storage, user, first_seen=at(i % 2), last_seen=at(3)) for i in range(5)
    ]
    await add_device(storage, other)
    listed = await collect(lambda **kw: storage.devices.list_devices(user.id, **kw), limit=2)
    assert listed == sorted(devices, key=lambda d: (d.first_seen, d.device_id))
    assert await storage.devices.count_devices(user.id) == 5
    assert await storage.devices.count_devices(make_user().id) == 0


async def test_recent_devices_are_those_seen_since(storage):
    """What the device cap counts: devices seen lately, not every row ever stored."""
    user = await add_user(storage)
    other = await add_user(storage)
    for hours in (0, 1, 2, 2, 3, 5):
        await add_device(storage, user, first_seen=at(0), last_seen=at(hours))
    await add_device(storage, other, first_seen=at(0), last_seen=at(5))
    assert await storage.devices.count_recent_devices(user.id, seen_since=at(0)) == 6
    assert await storage.devices.count_recent_devices(user.id, seen_since=at(2)) == 4
    assert await storage.devices.count_recent_devices(user.id, seen_since=at(5)) == 1
    assert await storage.devices.count_recent_devices(user.id, seen_since=at(6)) == 0
    assert await storage.devices.count_recent_devices(make_user().id, seen_since=at(0)) == 0


async def test_ip_views(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    a = await add_device(storage, user, ip="203.0.113.1")
    b = await add_device(storage, user, ip="203.0.113.1")
    c = await add_device(storage, user, ip="203.0.113.2")
    await add_device(storage, user, ip=None)
    await add_device(storage, other, ip="203.0.113.1")
    assert await storage.devices.user_ips(user.id) == {
        "203.0.113.1": tuple(sorted([a.device_id, b.device_id])),
        "203.0.113.2": (c.device_id,),
    }
    counts = await storage.devices.count_devices_on_ips(["203.0.113.1", "203.0.113.2", "192.0.2.1"])
    assert counts == {"203.0.113.1": 3, "203.0.113.2": 1}


async def test_set_scores(storage):
    user = await add_user(storage)
    a = await add_device(storage, user)
    b = await add_device(storage, user)
    updated = await storage.devices.set_scores({a.device_id: score(70), new_uuid(): score(1)})
    assert updated == 1
    assert (await storage.devices.get_device(a.device_id)).score == score(70)
    assert (await storage.devices.get_device(b.device_id)).score is None


async def test_mark_offline(storage):
    user = await add_user(storage)
    stale = await add_device(storage, user, status=DeviceStatus.ONLINE, last_seen=at(1))
    live = await add_device(storage, user, status=DeviceStatus.ONLINE, last_seen=at(5))
    off = await add_device(storage, user, status=DeviceStatus.OFFLINE, last_seen=at(0))
    assert await storage.devices.mark_offline(seen_before=at(2)) == 1
    assert (await storage.devices.get_device(stale.device_id)).status is DeviceStatus.OFFLINE
    assert (await storage.devices.get_device(live.device_id)).status is DeviceStatus.ONLINE
    assert await storage.devices.get_device(off.device_id) == off


async def test_the_owners_settings_change_nothing_else(storage):
    """Rename and pause set their column only: a flush or a scoring pass between the owner's
    read and write is kept (update_device, from the stale read, would put it back)."""
    user = await add_user(storage)
    device = await add_device(storage, user, ip="203.0.113.1")
    seen = attrs.evolve(device, ip="198.51.100.7", last_seen=at(5), status=DeviceStatus.ONLINE)
    await storage.devices.upsert_devices([seen])
    await storage.devices.set_scores({device.device_id: score(42)})
    await storage.devices.set_device_name(device.device_id, "attic")
    await storage.devices.set_device_paused(device.device_id, True)
    stored = await storage.devices.get_device(device.device_id)
    assert (stored.name, stored.paused) == ("attic", True)
    assert (stored.ip, stored.last_seen, stored.status) == (seen.ip, seen.last_seen, seen.status)
    assert stored.score is not None
    assert stored.score.value == 42
    await storage.devices.set_device_name(device.device_id, None)
    await storage.devices.set_device_paused(device.device_id, False)
    stored = await storage.devices.get_device(device.device_id)
    assert (stored.name, stored.paused) == (None, False)
    missing = make_device(user)
    with pytest.raises(StorageNotFound):
        await storage.devices.set_device_name(missing.device_id, "x")
    with pytest.raises(StorageNotFound):
        await storage.devices.set_device_paused(missing.device_id, True)
