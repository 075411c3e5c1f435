"""PostgresStorage: opening, units of work on one connection, and what only PostgreSQL can get
wrong (collation, inet and uuid round trips, ids that are not even well-formed)."""

from __future__ import annotations

import attrs
import pytest
import trio

from grass.errors import StorageConflict, StorageNotFound, TransactionAborted
from grass.ids import short_id
from grass.postgres.migrate import schema_version
from grass.storage.postgres import PostgresStorage, open_postgres_storage
from grass.storage.postgres.schema import OWNER, storage_migrations
from tests.storage.conftest import add_device, add_user, at, collect, make_user


@pytest.fixture
async def pg_storage(postgres_dsn, pg_fresh_schema):
    async with open_postgres_storage(
        postgres_dsn, schema=pg_fresh_schema, min_size=1, max_size=4
    ) as storage:
        yield storage


async def test_open_migrates_and_creates_partitions(pg_storage):
    assert isinstance(pg_storage, PostgresStorage)
    assert pg_storage.name == "postgres"
    assert await schema_version(pg_storage.db, OWNER) == len(storage_migrations())
    partitions = await pg_storage.db.run(
        lambda conn: conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'uptime_buckets'"
            " AND p.relnamespace = current_schema()::regnamespace"
        )
    )
    assert len(partitions) >= 2  # the default one and at least this month's


async def test_reopening_is_idempotent(postgres_dsn, pg_fresh_schema):
    user = make_user()
    for _ in range(2):
        async with open_postgres_storage(postgres_dsn, schema=pg_fresh_schema) as storage:
            if await storage.users.find_user_by_email(user.email) is None:
                await storage.users.create_user(user)
    async with open_postgres_storage(postgres_dsn, schema=pg_fresh_schema) as storage:
        assert (await storage.users.list_users()).items == (user,)


async def test_unit_of_work_is_invisible_until_commit(pg_storage):
    user = make_user()
    async with pg_storage.transaction() as tx:
        await tx.users.create_user(user)
        # Another connection (read committed) does not see the uncommitted row.
        assert await pg_storage.users.find_user_by_email(user.email) is None
        assert await tx.users.get_user(user.id) == user
    assert await pg_storage.users.get_user(user.id) == user


async def test_stores_of_an_ended_unit_of_work_refuse(pg_storage):
    async with pg_storage.transaction() as tx:
        pass
    with pytest.raises(RuntimeError):
        await tx.users.list_users()


async def test_failed_operation_is_rolled_back_even_if_caught(pg_storage):
    taken = await add_user(pg_storage)
    fresh = make_user()

    async def work():
        async with pg_storage.transaction() as tx:
            await tx.users.create_user(fresh)
            with pytest.raises(StorageConflict):
                await tx.users.create_user(make_user(email=taken.email))

    with pytest.raises(TransactionAborted):
        await work()
    assert await pg_storage.users.find_user_by_email(fresh.email) is None
    # The pool is healthy afterwards: the aborted connection was rolled back.
    assert await pg_storage.users.get_user(taken.id) == taken


async def test_malformed_ids_are_not_found(pg_storage):
    for missing in ("not-a-uuid", "x", ""):
        assert await pg_storage.devices.find_device(missing) is None
        with pytest.raises(StorageNotFound):
            await pg_storage.devices.delete_device(missing)
    with pytest.raises(StorageNotFound):
        await pg_storage.users.get_user("short")
    assert await pg_storage.devices.set_scores({}) == 0
    assert await pg_storage.notifications.mark_read(short_id(), ["?"], at(0)) == 0


async def test_string_keys_order_by_code_point(pg_storage):
    # Upper case sorts before lower case by code point, unlike most linguistic collations.
    ids = ["a" + short_id()[1:], "B" + short_id()[1:], "_" + short_id()[1:], "-" + short_id()[1:]]
    users = [await add_user(pg_storage, id=i) for i in ids]
    listed = await collect(pg_storage.users.list_users, limit=1)
    assert [u.id for u in listed] == sorted(u.id for u in users)


async def test_ipv6_and_uuid_round_trip(pg_storage):
    user = await add_user(pg_storage)
    device = await add_device(pg_storage, user, ip="2001:db8::ff00:42:8329")
    assert (await pg_storage.devices.get_device(device.device_id)).ip == "2001:db8::ff00:42:8329"
    assert await pg_storage.devices.user_ips(user.id) == {
        "2001:db8::ff00:42:8329": (device.device_id,)
    }
    assert await pg_storage.devices.count_devices_on_ips(["2001:db8::ff00:42:8329"]) == {
        "2001:db8::ff00:42:8329": 1
    }


async def test_concurrent_units_of_work_use_their_own_connections(pg_storage):
    users = [make_user() for _ in range(3)]
    entered = trio.Event()
    inside = 0

    async def register(user):
        nonlocal inside
        async with pg_storage.transaction() as tx:
            await tx.users.create_user(user)
            inside += 1
            if inside == len(users):
                entered.set()
            # Every unit of work is open at the same time: none waits for another.
            with trio.fail_after(5):
                await entered.wait()

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(register, user)
    listed = await pg_storage.users.list_users()
    assert {u.id for u in listed.items} == {u.id for u in users}


async def test_upsert_owner_conflict_names_the_device(pg_storage):
    user = await add_user(pg_storage)
    other = await add_user(pg_storage)
    theirs = await add_device(pg_storage, other)
    with pytest.raises(StorageConflict) as caught:
        await pg_storage.devices.upsert_devices([attrs.evolve(theirs, user_id=user.id)])
    assert caught.value.details["device_id"] == theirs.device_id
