"""The pool: start-up failures, lost connections and recovery, retries, replica routing."""

from __future__ import annotations

import random
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from grass.errors import StorageConflict, StorageUnavailable
from grass.postgres.errors import SerializationConflict
from grass.postgres.pool import Database, RetryPolicy, _Pool, describe_dsn, open_postgres


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with(dsn: str, *, netloc: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, path=path or parts.path))


def test_describe_dsn_hides_credentials():
    assert describe_dsn("postgresql://bob:s3cret@db.example:6543/grass") == "db.example:6543/grass"
    assert describe_dsn("postgresql://bob@localhost/") == "localhost:5432/bob"
    assert describe_dsn("postgres://h/x?port=7777") == "h:7777/x"
    assert describe_dsn("postgresql:///grass?host=/run/postgresql") == "/run/postgresql:5432/grass"


async def test_unreachable_at_start_is_a_clear_error():
    port = _unused_port()
    dsn = f"postgresql://grass:s3cret@127.0.0.1:{port}/grassdb"
    with pytest.raises(StorageUnavailable) as caught:
        async with open_postgres(dsn, connect_timeout=5):
            pytest.fail("the pool opened without a server")
    message = caught.value.message
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/grassdb: ")
    assert "s3cret" not in message
    assert "s3cret" not in repr(caught.value.details)
    assert caught.value.http_status == 503


async def test_unknown_database_at_start_is_unavailable(postgres_dsn):
    dsn = _with(postgres_dsn, path="/no_such_database_here")
    with pytest.raises(StorageUnavailable, match=r"no_such_database_here.*does not exist"):
        async with open_postgres(dsn):
            pytest.fail("the pool opened on a missing database")


async def test_run_commits_and_transaction_rolls_back_on_error(pg_db: Database):
    await pg_db.run(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t_rollback (v int)"))

    class Boom(Exception):
        pass

    async def insert_then_fail():
        async with pg_db.transaction() as conn:
            await conn.execute("INSERT INTO t_rollback VALUES (1)")
            raise Boom

    with pytest.raises(Boom):
        await insert_then_fail()
    assert await pg_db.read(lambda c: c.fetchval("SELECT count(*) FROM t_rollback")) == 0

    async with pg_db.transaction() as conn:
        await conn.execute("INSERT INTO t_rollback VALUES (2)")
    assert await pg_db.read(lambda c: c.fetchval("SELECT sum(v) FROM t_rollback")) == 2


async def test_savepoint_keeps_the_outer_transaction(pg_db: Database):
    async def work(conn):
        await conn.execute("CREATE TABLE t_savepoint (v int PRIMARY KEY)")
        await conn.execute("INSERT INTO t_savepoint VALUES (1)")
        with pytest.raises(StorageConflict):
            async with conn.transaction():
                await conn.execute("INSERT INTO t_savepoint VALUES (1)")
        await conn.execute("INSERT INTO t_savepoint VALUES (2)")
        return await conn.fetchval("SELECT array_agg(v ORDER BY v) FROM t_savepoint")

    assert await pg_db.run(work) == [1, 2]


async def test_json_columns_round_trip(pg_db: Database):
    value = {"a": [1, 2, {"b": None}], "ü": "x"}
    assert await pg_db.read(lambda c: c.fetchval("SELECT $1::jsonb", value)) == value


async def test_connection_lost_mid_operation_then_recovers(pg_open, postgres_dsn):
    # One connection only: the next operation must get a new one from the recovered pool.
    async with (
        pg_open(max_size=1) as db,
        pg_open(max_size=1) as admin,
    ):
        backend: list[int] = []
        running = trio.Event()

        async def slow(conn):
            backend.append(await conn.fetchval("SELECT pg_backend_pid()"))
            running.set()
            await conn.execute("SELECT pg_sleep(30)")

        async def kill():
            await running.wait()
            await admin.run(lambda c: c.fetchval("SELECT pg_terminate_backend($1)", backend[0]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill)
            with pytest.raises(StorageUnavailable) as caught:
                await db.run(slow)
        assert caught.value.message.startswith(
            f"lost connection to PostgreSQL at {describe_dsn(postgres_dsn)}: "
        )

        pid = await db.run(lambda c: c.fetchval("SELECT pg_backend_pid()"))
        assert pid != backend[0]
        await db.ping()


async def test_connection_killed_while_idle_is_replaced_transparently(pg_open):
    async with (
        pg_open(max_size=1) as db,
        pg_open(max_size=1) as admin,
    ):
        pid = await db.run(lambda c: c.fetchval("SELECT pg_backend_pid()"))
        await admin.run(lambda c: c.fetchval("SELECT pg_terminate_backend($1)", pid))
        # The work never began on the dead connection, so it runs on a fresh one.
        assert await db.run(lambda c: c.fetchval("SELECT pg_backend_pid()")) != pid


async def _write_skew(db: Database, table: str, retry: RetryPolicy) -> tuple[list[int], int]:
    """Two SERIALIZABLE transactions each read the row count, then insert it: they cannot
    both commit. Returns the values in the table and the number of attempts made."""
    await db.run(lambda c: c.execute(f"CREATE TABLE {table} (v int)"))
    attempts = 0
    both_read = trio.Event()
    readers = 0

    async def add_count(conn):
        nonlocal attempts, readers
        attempts += 1
        count = await conn.fetchval(f"SELECT count(*) FROM {table}")
        if not both_read.is_set():
            readers += 1
            if readers == 2:
                both_read.set()
            await both_read.wait()
        await conn.execute(f"INSERT INTO {table} VALUES ($1)", count)

    async def writer():
        await db.run(add_count, isolation="serializable")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(writer)
    rows = await db.read(lambda c: c.fetch(f"SELECT v FROM {table} ORDER BY v"))
    return [r["v"] for r in rows], attempts


async def test_serialization_failure_is_retried(pg_open):
    async with pg_open(retry=RetryPolicy(attempts=3), rng=random.Random(7)) as db:
        values, attempts = await _write_skew(db, "t_skew_retry", RetryPolicy(attempts=3))
    assert values == [0, 1]
    assert attempts == 3


async def test_serialization_failure_after_last_attempt_is_a_conflict(pg_open):
    async with pg_open(retry=RetryPolicy(attempts=1)) as db:
        with pytest.RaisesGroup(
            pytest.RaisesExc(SerializationConflict, match="serialization failure")
        ):
            await _write_skew(db, "t_skew_once", RetryPolicy(attempts=1))
        assert await db.read(lambda c: c.fetchval("SELECT count(*) FROM t_skew_once")) == 1


async def test_deadlock_is_retried(pg_open):
    async with pg_open(server_settings={"deadlock_timeout": "50ms"}) as db:
        await db.run(
            lambda c: c.execute(
                "CREATE TABLE t_dead (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)"
            )
        )
        await db.run(lambda c: c.execute("INSERT INTO t_dead (id) VALUES (1), (2)"))
        first_locked = trio.Event()
        second_locked = trio.Event()
        attempts = 0

        def locker(first: int, second: int, mine: trio.Event, theirs: trio.Event):
            async def work(conn):
                nonlocal attempts
                attempts += 1
                await conn.execute("UPDATE t_dead SET n = n + 1 WHERE id = $1", first)
                mine.set()
                await theirs.wait()
                await conn.execute("UPDATE t_dead SET n = n + 1 WHERE id = $1", second)

            return work

        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.run, locker(1, 2, first_locked, second_locked))
            nursery.start_soon(db.run, locker(2, 1, second_locked, first_locked))
        counts = await db.read(lambda c: c.fetch("SELECT n FROM t_dead ORDER BY id"))
    assert [r["n"] for r in counts] == [2, 2]
    assert attempts == 3


async def test_pool_exhausted_is_unavailable(pg_open):
    async with pg_open(max_size=1, acquire_timeout=0.2) as db:
        async with db.connection():
            with pytest.raises(StorageUnavailable, match="pool exhausted"):
                await db.run(lambda c: c.fetchval("SELECT 1"))
        assert await db.run(lambda c: c.fetchval("SELECT 1")) == 1


async def test_read_goes_to_the_replica(pg_open, postgres_dsn):
    async with pg_open(replica_dsn=postgres_dsn) as db:
        assert db.has_replica
        show = "SELECT current_setting('application_name')"
        assert await db.read(lambda c: c.fetchval(show)) == "grass-replica"
        assert await db.run(lambda c: c.fetchval(show), readonly=True) == "grass"
        # Read-only all the way: a write through read() is refused by the server.
        with pytest.raises(Exception, match="read-only transaction"):
            await db.read(lambda c: c.execute("CREATE TABLE t_nope (v int)"))


class _DeadPool:
    """A pool whose server is gone: every acquire fails like a refused connection."""

    def acquire(self):
        return self

    async def __aenter__(self):
        raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.9', 5432)")

    async def __aexit__(self, *exc_info):
        return False


async def test_read_falls_back_to_the_primary_when_the_replica_is_down(pg_db: Database):
    db = Database(
        primary=pg_db._primary,
        replica=_Pool(raw=_DeadPool(), target="10.0.0.9:5432/test"),
        retry=RetryPolicy(),
        acquire_timeout=5,
        ping_timeout=5,
        rng=random.Random(1),
    )
    assert await db.read(lambda c: c.fetchval("SELECT 41 + 1")) == 42
    with pytest.raises(StorageUnavailable, match=r"cannot connect to PostgreSQL at 10\.0\.0\.9"):
        await db.ping()
