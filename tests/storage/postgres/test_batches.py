"""Batch writes of the PostgreSQL uptime and earnings stores, on the tables themselves."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import trio

from grass.domain.periods import Period, PeriodTotal
from grass.domain.uptime import UptimeStats
from grass.errors import IntegrityViolation, InvalidValue, RowRefused, StorageConflict
from grass.ids import new_uuid, short_id
from grass.storage.postgres.earnings import PgEarningsStore
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.scope import Scope, UnitOfWork
from grass.storage.postgres.uptime import PgUptimeStore
from grass.storage.postgres.uptime_flush import merge_uptime
from grass.storage.postgres.users import PgUserStore
from tests.storage.conftest import HOUR, T0, delta, make_device, make_entry, make_user


@pytest.fixture
async def stores(pg_migrated):
    async def clean(conn):
        await conn.execute(
            "TRUNCATE uptime_buckets, uptime_deltas, earnings, earnings_keys, devices, users, epochs"
            " CASCADE"
        )

    await pg_migrated.run(clean)
    scope = Scope(pg_migrated)
    return pg_migrated, PgUptimeStore(scope), PgEarningsStore(scope)


async def _user_with_devices(db, count=1):
    user = make_user()
    devices = [make_device(user) for _ in range(count)]

    async def insert(conn):
        await conn.execute(
            "INSERT INTO users (id, email, referral_code, password_hash, password_changed_at,"
            " created_at) VALUES ($1, $2, $3, 'x', $4, $4)",
            user.id,
            user.email,
            user.referral_code,
            T0,
        )
        for d in devices:
            await conn.execute(
                "INSERT INTO devices (id, user_id, type, ip, first_seen, last_seen)"
                " VALUES ($1, $2, 'extension', $3, $4, $4)",
                d.device_id,
                user.id,
                d.ip,
                T0,
            )

    await db.run(insert)
    return user, devices


async def _rows(db, query, *args):
    return await db.run(lambda conn: conn.fetch(query, *args))


async def test_flush_pre_aggregates_repeated_keys_into_one_row(stores):
    db, uptime, _ = stores
    _, (device,) = await _user_with_devices(db)
    result = await uptime.add_uptime(
        [
            delta(device, seconds=10, rtt_count=1, rtt_sum_ms=30, rtt_max_ms=30),
            delta(device, seconds=20, rtt_count=2, rtt_sum_ms=50, rtt_max_ms=45, reconnects=1),
            delta(device, seconds=5, rtt_count=1, rtt_sum_ms=9, rtt_max_ms=9),
        ]
    )
    assert result.applied == 3
    for table in ("uptime_deltas", "uptime_buckets"):  # appended as one row, merged as one
        rows = await _rows(
            db, f"SELECT seconds, rtt_count, rtt_sum_ms, rtt_max_ms, reconnects FROM {table}"
        )
        assert [tuple(r.values()) for r in rows] == [(35, 4, 89, 45, 1)]
        assert await merge_uptime(db) == (1 if table == "uptime_deltas" else 0)


async def test_flush_skips_unknown_devices_and_writes_the_rest(stores):
    db, uptime, _ = stores
    user, (known,) = await _user_with_devices(db)
    ghosts = [make_device(user) for _ in range(2)]
    result = await uptime.add_uptime(
        [delta(ghosts[0]), delta(known, seconds=7), delta(ghosts[1]), delta(ghosts[0], T0 + HOUR)]
    )
    assert result.applied == 1
    assert result.unknown_devices == {g.device_id for g in ghosts}
    rows = await _rows(db, "SELECT device_id::text AS d, seconds FROM uptime_deltas")
    assert [(r["d"], r["seconds"]) for r in rows] == [(known.device_id, 7)]
    await merge_uptime(db)
    rows = await _rows(db, "SELECT device_id::text AS d, seconds FROM uptime_buckets")
    assert [(r["d"], r["seconds"]) for r in rows] == [(known.device_id, 7)]


async def test_flush_lands_in_monthly_partitions_and_the_default(stores):
    db, uptime, _ = stores
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    await ensure_partitions(db, now=now, months_ahead=0)
    _, (device,) = await _user_with_devices(db)
    far = dt.datetime(1999, 1, 1, tzinfo=dt.UTC)
    await uptime.add_uptime([delta(device, now, 10), delta(device, far, 20)])
    await merge_uptime(db)
    rows = await _rows(
        db, "SELECT tableoid::regclass::text AS part, seconds FROM uptime_buckets ORDER BY 2"
    )
    assert [(r["part"].rsplit(".", 1)[-1], r["seconds"]) for r in rows] == [
        (f"uptime_buckets_{now:%Y_%m}", 10),
        ("uptime_buckets_default", 20),
    ]


async def test_two_flushes_in_one_unit_of_work_do_not_replay_staged_rows(stores):
    db, _, _ = stores
    _, (device,) = await _user_with_devices(db)
    async with db.transaction() as conn:
        uptime = PgUptimeStore(Scope(db, UnitOfWork(conn)))
        await uptime.add_uptime([delta(device, seconds=10)])
        await uptime.add_uptime([delta(device, seconds=1)])
    stats = await PgUptimeStore(Scope(db)).uptime_stats()
    assert stats == UptimeStats(seconds=11)


async def test_flush_of_a_large_batch_adds_exactly(stores):
    db, uptime, _ = stores
    _, devices = await _user_with_devices(db, count=50)
    deltas = [delta(d, T0 + HOUR * (i % 3), 1 + i % 7) for i, d in enumerate(devices * 40)]
    await uptime.add_uptime(deltas)
    await uptime.add_uptime(deltas)
    assert (await uptime.uptime_stats()).seconds == 2 * sum(x.stats.seconds for x in deltas)
    assert await merge_uptime(db) == 150
    assert len(await _rows(db, "SELECT 1 FROM uptime_buckets")) == 150
    assert (await uptime.uptime_stats()).seconds == 2 * sum(x.stats.seconds for x in deltas)


async def test_series_folds_the_repeated_fall_back_hour(stores):
    db, uptime, _ = stores
    user, (device,) = await _user_with_devices(db)
    # New York, 3 November 2024: 01:00 local happens twice (05:00 and 06:00 UTC).
    first = dt.datetime(2024, 11, 3, 5, tzinfo=dt.UTC)
    await uptime.add_uptime([delta(device, first, 10), delta(device, first + HOUR, 20)])
    hours = await uptime.uptime_series(user.id, period=Period.HOUR, tz="America/New_York")
    assert hours == [PeriodTotal(start=first, value=10), PeriodTotal(start=first + HOUR, value=20)]


async def test_earnings_reinsert_is_idempotent(stores):
    db, _, earnings = stores
    user, _ = await _user_with_devices(db)
    batch = [make_entry(user.id, amount=i, accrued_at=T0 + HOUR * i) for i in range(5)]
    assert (await earnings.insert_earnings(batch)).inserted == 5
    retry = [attrs.evolve(e, id=short_id()) for e in batch]
    result = await earnings.insert_earnings([*retry, make_entry(user.id)])
    assert result.inserted == 1
    assert result.duplicates == tuple(e.idempotency_key for e in batch)
    counts = await _rows(
        db, "SELECT (SELECT count(*) FROM earnings) AS e, (SELECT count(*) FROM earnings_keys) AS k"
    )
    assert tuple(counts[0].values()) == (6, 6)


async def test_earnings_conflict_rejects_the_whole_batch(stores):
    db, _, earnings = stores
    user, _ = await _user_with_devices(db)
    stored = make_entry(user.id, device_id=new_uuid())
    await earnings.insert_earnings([stored])
    fresh = [make_entry(user.id) for _ in range(3)]
    with pytest.raises(StorageConflict):
        await earnings.insert_earnings([*fresh, attrs.evolve(stored, amount=stored.amount + 1)])
    with pytest.raises(StorageConflict):  # an id taken under another key, another month
        await earnings.insert_earnings(
            [*fresh, make_entry(user.id, id=stored.id, accrued_at=T0 + 40 * 24 * HOUR)]
        )
    with pytest.raises(IntegrityViolation):
        await earnings.insert_earnings([*fresh, make_entry(make_user())])
    for entry in fresh:
        assert await earnings.find_earning(entry.idempotency_key) is None
    assert len(await _rows(db, "SELECT 1 FROM earnings_keys")) == 1


async def test_deleting_a_user_deletes_its_keys(stores):
    db, _, earnings = stores
    user, _ = await _user_with_devices(db)
    entry = make_entry(user.id)
    await earnings.insert_earnings([entry])
    # Through the store: the keys have no foreign key to users (migration 0009).
    await PgUserStore(Scope(db)).delete_user(user.id)
    assert await earnings.find_earning(entry.idempotency_key) is None
    assert await _rows(db, "SELECT 1 FROM earnings_keys") == []
    assert await _rows(db, "SELECT 1 FROM earnings") == []  # through the keys' trigger (0005)


async def _delete_while_writing(db, user_id, write, waiting_query):
    """Run ``write`` in a transaction left open, delete the user meanwhile, check that the
    delete waits (``waiting_query`` finds it blocked), then commit the write and let the
    delete end."""
    written, commit, deleted = trio.Event(), trio.Event(), trio.Event()

    async def writer():
        async with db.transaction() as conn:
            await write(conn)
            written.set()
            await commit.wait()

    async def deleter():
        await written.wait()
        await PgUserStore(Scope(db)).delete_user(user_id)
        deleted.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(deleter)
        await written.wait()
        for _ in range(1000):
            if await _rows(db, waiting_query):
                break
            await trio.sleep(0.01)  # a server-side state: no event to wait on
        else:
            pytest.fail("the delete never waited for the writer")
        assert not deleted.is_set()
        commit.set()
    assert deleted.is_set()


_DELETE_WAITING = """
SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE NOT l.granted AND a.datname = current_database() AND a.query LIKE 'DELETE FROM users%'
"""


async def test_a_delete_waits_for_a_writer_of_the_user_then_removes_what_it_wrote(stores):
    # What the keys' foreign key to users used to give (migration 0009): a writer that locked
    # the user first makes a concurrent delete wait for its commit, and the delete sees it.
    db, _, _ = stores
    user, _ = await _user_with_devices(db)
    entry = make_entry(user.id)

    async def write(conn):
        await PgEarningsStore(Scope(db, UnitOfWork(conn))).insert_earnings([entry])

    # The delete blocks on the writer's lock of the user.
    await _delete_while_writing(db, user.id, write, _DELETE_WAITING)
    assert await _rows(db, "SELECT 1 FROM earnings_keys") == []
    assert await _rows(db, "SELECT 1 FROM earnings") == []
    # And a writer after the delete finds the user gone.
    with pytest.raises(IntegrityViolation, match="earnings_keys_user"):
        await PgEarningsStore(Scope(db)).insert_earnings([make_entry(user.id)])


_DELETE_WAITING_FOR_FLUSHES = """
SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE NOT l.granted AND l.locktype = 'advisory' AND a.datname = current_database()
  AND a.query LIKE '%pg_advisory_xact_lock(%'
"""


async def test_a_delete_waits_for_a_flush_under_way_then_removes_what_it_wrote(stores):
    # Without it: the flush checked the device before the delete committed, committed after
    # the delete had removed the user's uptime, and left uptime of a user that is gone (every
    # close of its bucket then failed on it).
    db, _, _ = stores
    user, (device,) = await _user_with_devices(db)

    async def flush(conn):
        store = PgUptimeStore(Scope(db, UnitOfWork(conn)))
        assert (await store.add_uptime([delta(device, seconds=30)])).applied == 1

    await _delete_while_writing(db, user.id, flush, _DELETE_WAITING_FOR_FLUSHES)
    assert await _rows(db, "SELECT 1 FROM uptime_current") == []
    # And a flush after the delete finds the device gone.
    later = await PgUptimeStore(Scope(db)).add_uptime([delta(device, seconds=30)])
    assert later.unknown_devices == {device.device_id}
    assert await _rows(db, "SELECT 1 FROM uptime_current") == []


@pytest.mark.parametrize(
    ("field", "bad"), [("user_id", "x\udfff"), ("stats", UptimeStats(seconds=2**40))]
)
async def test_a_flush_refusing_a_row_for_its_content_writes_nothing_and_says_so(
    stores, field, bad
):
    """COPY encodes rows itself: a value it cannot send fails the flush with InvalidValue (a
    row's fault, which the flusher isolates), not a raw UnicodeEncodeError or OverflowError
    that it retried forever; nothing is written and the connection goes on."""
    db, uptime, _ = stores
    _, (one, two) = await _user_with_devices(db, 2)
    poisoned = delta(two)
    object.__setattr__(poisoned, field, bad)  # past the domain's validators
    with pytest.raises(InvalidValue) as raised:
        await uptime.add_uptime([delta(one), poisoned])
    assert isinstance(raised.value, RowRefused)
    assert "\udfff" not in raised.value.message
    assert (await uptime.uptime_stats()).seconds == 0
    assert (await uptime.add_uptime([delta(one)])).applied == 1
    assert (await uptime.uptime_stats()).seconds == 60
