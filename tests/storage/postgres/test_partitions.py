"""Monthly partitions: created ahead, idempotent, rows routed, strays moved out of DEFAULT."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from grass.errors import StorageConflict
from grass.ids import short_id
from grass.storage.postgres.partitions import ensure_partitions, month_starts, partition_name
from grass.storage.postgres.schema import migrate_storage_tables

UTC = dt.UTC


def test_month_starts_roll_over_the_year():
    now = dt.datetime(2030, 11, 30, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    # 23:59 at UTC-3 is already December in UTC.
    assert month_starts(now, 2) == [
        dt.datetime(2030, 12, 1, tzinfo=UTC),
        dt.datetime(2031, 1, 1, tzinfo=UTC),
        dt.datetime(2031, 2, 1, tzinfo=UTC),
    ]
    assert partition_name("earnings", dt.datetime(2031, 2, 1, tzinfo=UTC)) == "earnings_2031_02"
    with pytest.raises(ValueError, match="timezone-aware"):
        month_starts(dt.datetime(2030, 1, 1), 1)


@pytest.fixture
async def db(pg_db):
    await migrate_storage_tables(pg_db)
    return pg_db


async def _partition_of(db, table, column, value):
    return await db.read(
        lambda c: c.fetchval(
            f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = $1", value
        )
    )


async def _add_user_and_device(db):
    user_id, device_id = short_id(), uuid.uuid4()
    at = dt.datetime(2020, 1, 1, tzinfo=UTC)

    async def add(conn):
        await conn.execute(
            "INSERT INTO users (id, email, referral_code, password_hash, password_changed_at,"
            " created_at) VALUES ($1, $2, $3, 'x', $4, $4)",
            user_id,
            f"{user_id}@example.org",
            user_id[:8].replace("-", "a"),
            at,
        )
        await conn.execute(
            "INSERT INTO devices (id, user_id, type, first_seen, last_seen)"
            " VALUES ($1, $2, 'desktop', $3, $3)",
            device_id,
            user_id,
            at,
        )

    await db.run(add)
    return user_id, device_id


async def _add_bucket(db, user_id, device_id, start):
    await db.run(
        lambda c: c.execute(
            "INSERT INTO uptime_buckets (device_id, bucket_start, user_id, ip, seconds)"
            " VALUES ($1, $2, $3, '203.0.113.7', 60)",
            device_id,
            start,
            user_id,
        )
    )


async def _add_earning(db, user_id, accrued_at):
    entry, key = short_id(), f"test:{short_id()}"

    async def add(conn):
        await conn.execute(
            "INSERT INTO earnings_keys (idempotency_key, entry_id, accrued_at, user_id)"
            " VALUES ($1, $2, $3, $4)",
            key,
            entry,
            accrued_at,
            user_id,
        )
        await conn.execute(
            "INSERT INTO earnings (id, user_id, source, amount, idempotency_key, accrued_at,"
            " created_at) VALUES ($1, $2, 'network', 5, $3, $4, now())",
            entry,
            user_id,
            key,
            accrued_at,
        )

    await db.run(add)
    return entry


async def test_partitions_are_created_once_and_rows_land_in_them(db):
    now = dt.datetime(2040, 6, 15, 12, tzinfo=UTC)
    created = await ensure_partitions(db, now=now, months_ahead=2)
    assert sorted(created) == sorted(
        f"{table}_{month}"
        for table in ("uptime_buckets", "earnings")
        for month in ("2040_06", "2040_07", "2040_08")
    )
    assert await ensure_partitions(db, now=now, months_ahead=2) == []

    user_id, device_id = await _add_user_and_device(db)
    july = dt.datetime(2040, 7, 31, 23, tzinfo=UTC)
    await _add_bucket(db, user_id, device_id, july)
    assert await _partition_of(db, "uptime_buckets", "bucket_start", july) == (
        "uptime_buckets_2040_07"
    )
    entry = await _add_earning(db, user_id, july)
    assert await _partition_of(db, "earnings", "id", entry) == "earnings_2040_07"

    # No partition for that month: the DEFAULT partition takes the row, nothing fails.
    later = dt.datetime(2041, 3, 1, tzinfo=UTC)
    await _add_bucket(db, user_id, device_id, later)
    assert await _partition_of(db, "uptime_buckets", "bucket_start", later) == (
        "uptime_buckets_default"
    )


async def test_rows_already_in_default_move_to_the_new_partition(db):
    user_id, device_id = await _add_user_and_device(db)
    stray = dt.datetime(2045, 2, 10, 8, tzinfo=UTC)
    await _add_bucket(db, user_id, device_id, stray)
    entry = await _add_earning(db, user_id, stray)
    assert await _partition_of(db, "earnings", "id", entry) == "earnings_default"

    created = await ensure_partitions(db, now=stray, months_ahead=0)
    assert sorted(created) == ["earnings_2045_02", "uptime_buckets_2045_02"]
    assert await _partition_of(db, "uptime_buckets", "bucket_start", stray) == (
        "uptime_buckets_2045_02"
    )
    assert await _partition_of(db, "earnings", "id", entry) == "earnings_2045_02"
    # The moved partition is a full member: its key still holds.
    with pytest.raises(StorageConflict) as caught:
        await _add_bucket(db, user_id, device_id, stray)
    assert caught.value.details["constraint"] == "uptime_buckets_2045_02_pkey"


async def test_partitions_of_the_current_month_exist_after_setup(pg_migrated):
    now = dt.datetime.now(UTC)
    names = {partition_name(t, m) for m in month_starts(now, 2) for t in ("earnings",)}
    rows = await pg_migrated.read(
        lambda c: c.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'earnings'::regclass"
        )
    )
    assert names <= {r["relname"] for r in rows}


async def test_uptime_partitions_leave_room_for_in_place_updates(pg_migrated):
    from datetime import UTC, datetime

    from grass.storage.postgres.partitions import ensure_partitions

    await ensure_partitions(pg_migrated, now=datetime(2031, 5, 3, tzinfo=UTC), months_ahead=0)
    options = await pg_migrated.run(
        lambda c: c.fetchval(
            "SELECT reloptions FROM pg_class WHERE relname = 'uptime_buckets_2031_05'"
        )
    )
    assert options == ["fillfactor=50"]
