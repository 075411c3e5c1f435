"""The PostgreSQL uptime flush appends deltas; a background merge folds them into buckets.

Every read must give the same answer before and after the merge, and the merge must neither
lose nor double a delta whatever runs beside it.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from grass.domain.uptime import UptimeStats
from grass.postgres.migrate import LOCK_CLASS
from grass.storage.postgres.storage import PostgresStorage
from grass.storage.postgres.uptime_flush import merge_uptime
from tests.storage.conftest import T0, add_device, add_user, delta


@pytest.fixture
async def storage(pg_migrated):
    await pg_migrated.run(
        lambda conn: conn.execute(
            "TRUNCATE uptime_buckets, uptime_deltas, earnings, earnings_keys, devices, users"
            " CASCADE"
        )
    )
    return PostgresStorage(pg_migrated)


async def _pending(storage):
    return await storage.db.run(lambda conn: conn.fetchval("SELECT count(*) FROM uptime_deltas"))


async def _views(storage, *users):
    uptime = storage.uptime
    return (
        (await uptime.list_buckets(T0)).items,
        await uptime.uptime_stats(),
        await uptime.uptime_by_user([u.id for u in users]),
        await uptime.uptime_by_ip(),
        [await uptime.uptime_by_device(u.id) for u in users],
        await uptime.bucket_starts(),
    )


async def test_reads_are_the_same_before_and_after_the_merge(storage):
    first, second = await add_user(storage), await add_user(storage)
    device = await add_device(storage, first)
    other = await add_device(storage, second, ip="198.51.100.7")
    await storage.uptime.add_uptime(
        [delta(device, seconds=30, rtt_count=1, rtt_sum_ms=20, rtt_max_ms=20), delta(other)]
    )
    await merge_uptime(storage.db)
    # Pending on top of merged rows: more seconds, a higher maximum, and the device now
    # reported by the second user (the latest delta names the owner of the whole bucket; a
    # delta counts only for the device's owner, so the device was removed and re-added).
    await _move(storage, device, second)
    moved = attrs.evolve(
        delta(device, seconds=15, rtt_count=2, rtt_sum_ms=90, rtt_max_ms=60), user_id=second.id
    )
    await storage.uptime.add_uptime([moved, delta(other, seconds=5)])
    assert await _pending(storage) == 2
    before = await _views(storage, first, second)
    buckets = {b.device_id: b for b in before[0]}
    assert buckets[device.device_id].user_id == second.id
    assert buckets[device.device_id].stats == UptimeStats(
        seconds=45, rtt_count=3, rtt_sum_ms=110, rtt_max_ms=60
    )
    assert before[1].seconds == 45 + 60 + 5
    assert before[2] == {second.id: before[1]}
    assert await merge_uptime(storage.db) == 2
    assert await _pending(storage) == 0
    assert await _views(storage, first, second) == before


async def test_a_flush_committing_during_a_merge_stays_pending(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    await storage.uptime.add_uptime([delta(device, seconds=10)])
    async with storage.transaction() as tx:
        await tx.uptime.add_uptime([delta(device, seconds=7)])
        # Not committed yet: the merge moves only the first flush, and does not wait.
        with trio.fail_after(10):
            assert await merge_uptime(storage.db) == 1
    assert await _pending(storage) == 1
    assert (await storage.uptime.uptime_stats()).seconds == 17
    assert await merge_uptime(storage.db) == 1
    assert (await storage.uptime.uptime_stats()).seconds == 17


async def test_a_merge_already_running_elsewhere_is_skipped(storage):
    user = await add_user(storage)
    device = await add_device(storage, user)
    await storage.uptime.add_uptime([delta(device, seconds=10)])
    async with storage.db.transaction() as conn:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || 'uptime'))", LOCK_CLASS
        )
        assert await merge_uptime(storage.db) == 0
    assert await _pending(storage) == 1
    assert await merge_uptime(storage.db) == 1


async def test_deleting_a_user_deletes_the_buckets_pending_deltas_gave_it(storage):
    first, second = await add_user(storage), await add_user(storage)
    device = await add_device(storage, first)
    await storage.uptime.add_uptime([delta(device, seconds=30)])
    await merge_uptime(storage.db)
    await _move(storage, device, second)
    await storage.uptime.add_uptime([attrs.evolve(delta(device, seconds=5), user_id=second.id)])
    await storage.users.delete_user(second.id)
    assert await _pending(storage) == 0
    assert (await storage.uptime.list_buckets(T0)).items == ()
    assert await storage.uptime.uptime_stats() == UptimeStats()


async def _move(storage, device, user):
    """The device removed by its owner and added again by ``user`` (its uptime stays)."""
    await storage.devices.delete_device(device.device_id)
    await storage.devices.create_device(attrs.evolve(device, user_id=user.id))
