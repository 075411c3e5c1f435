"""Migrations: up from empty, idempotent, serialized, per owner, and refusing histories they
disagree with."""

from __future__ import annotations

import pytest
import trio

from grass.errors import IntegrityViolation
from grass.ledger.postgres_schema import ledger_migrations, migrate_ledger_tables
from grass.postgres.errors import ChecksumMismatch, MigrationError, SchemaTooNew
from grass.postgres.migrate import Migration, load_migrations, migrate, schema_version
from grass.postgres.pool import open_postgres
from grass.storage.postgres.schema import OWNER, migrate_storage_tables, storage_migrations

EXPECTED_TABLES = {
    "users",
    "sessions",
    "api_keys",
    "wallet_links",
    "devices",
    "uptime_buckets",
    "uptime_buckets_default",
    "earnings_keys",
    "earnings",
    "earnings_default",
    "referrals",
    "notifications",
    "epochs",
    "feature_flags",
    "bans",
    "admin_audit_log",
    "schema_migrations",
}
LEDGER_TABLES = {
    "ledger_credits",
    "ledger_balances",
    "ledger_accounts",
    "ledger_state",
    "ledger_settlements",
    "ledger_anchored_roots",
    "ledger_outbox",
}
TOY = "toy"


@pytest.fixture
async def db(postgres_dsn, pg_fresh_schema):
    async with open_postgres(
        postgres_dsn, server_settings={"search_path": pg_fresh_schema}, max_size=4
    ) as database:
        yield database


async def _tables(db):
    rows = await db.read(
        lambda c: c.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    )
    return {r["tablename"] for r in rows}


def _toy(*sqls: str) -> list[Migration]:
    return [Migration(version=i, name=f"step{i}", sql=sql) for i, sql in enumerate(sqls, 1)]


def test_shipped_migrations_are_numbered_from_one_per_owner():
    for migrations, first in (
        (storage_migrations(), "0001_schema"),
        (ledger_migrations(), "0001_ledger"),
    ):
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert migrations[0].label == first


def test_bad_file_names_and_gaps_are_refused(tmp_path):
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0003_third.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)
    (tmp_path / "0002-second.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)


async def test_up_from_empty_then_a_rerun_does_nothing(db):
    assert await schema_version(db, OWNER) == 0
    shipped = storage_migrations()
    assert await migrate_storage_tables(db) == [m.version for m in shipped]
    assert await schema_version(db, OWNER) == shipped[-1].version
    assert await schema_version(db, "ledger") == 0
    assert await _tables(db) >= EXPECTED_TABLES
    assert not await _tables(db) & LEDGER_TABLES  # the ledger's, created by its own runner

    query = "SELECT * FROM schema_migrations ORDER BY owner, version"
    before = await db.read(lambda c: c.fetch(query))
    assert [r["checksum"] for r in before] == [m.checksum for m in shipped]
    assert await migrate_storage_tables(db) == []
    after = await db.read(lambda c: c.fetch(query))
    assert [dict(r) for r in after] == [dict(r) for r in before]


async def test_each_owner_has_its_own_sequence(db):
    await migrate_storage_tables(db)
    ledger = ledger_migrations()
    assert await migrate_ledger_tables(db) == [m.version for m in ledger]
    assert await _tables(db) >= EXPECTED_TABLES | LEDGER_TABLES
    assert await schema_version(db, "ledger") == len(ledger)
    assert await migrate(db, TOY, _toy("CREATE TABLE a (v int);")) == [1]
    rows = await db.read(lambda c: c.fetch("SELECT owner, version FROM schema_migrations"))
    assert sorted((r["owner"], r["version"]) for r in rows) == sorted(
        [(OWNER, m.version) for m in storage_migrations()]
        + [("ledger", m.version) for m in ledger]
        + [(TOY, 1)]
    )


async def test_instances_starting_together_apply_each_migration_once(db):
    slow = _toy("SELECT pg_sleep(0.2); CREATE TABLE a (v int);", "CREATE TABLE b (v int);")
    results: list[list[int]] = []

    async def instance():
        results.append(await migrate(db, TOY, slow))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(instance)
    assert sorted(results) == [[], [], [1, 2]]


async def test_a_schema_newer_than_the_code_is_refused(db):
    await migrate(db, TOY, _toy("CREATE TABLE a (v int);", "CREATE TABLE b (v int);"))
    with pytest.raises(SchemaTooNew) as caught:
        await migrate(db, TOY, _toy("CREATE TABLE a (v int);"))
    assert "version 2" in caught.value.message
    assert "the 1 this code knows" in caught.value.message
    assert caught.value.details == {"owner": TOY, "database_version": 2, "code_version": 1}


async def test_a_changed_applied_migration_is_refused(db):
    await migrate(db, TOY, _toy("CREATE TABLE a (v int);"))
    with pytest.raises(ChecksumMismatch, match="0001_step1 was changed"):
        await migrate(db, TOY, _toy("CREATE TABLE a (v bigint);", "CREATE TABLE b (v int);"))
    assert await schema_version(db, TOY) == 1
    assert "b" not in await _tables(db)


async def test_a_missing_older_migration_is_refused(db):
    await migrate(db, TOY, _toy("CREATE TABLE a (v int);", "CREATE TABLE b (v int);"))
    await db.run(lambda c: c.execute("DELETE FROM schema_migrations WHERE version = 1"))
    with pytest.raises(MigrationError, match="0001_step1 is not applied but later version 2"):
        await migrate(db, TOY, _toy("CREATE TABLE a (v int);", "CREATE TABLE b (v int);"))


async def test_an_owner_is_a_lower_case_name(db):
    with pytest.raises(MigrationError, match="owner"):
        await migrate(db, "Toy Owner", _toy("CREATE TABLE a (v int);"))


async def test_a_failing_migration_leaves_nothing_behind(db):
    steps = _toy("CREATE TABLE a (v int);", "CREATE TABLE b (v int); SELECT 1 / 0;")
    with pytest.raises(Exception, match="division by zero"):
        await migrate(db, TOY, steps)
    assert await schema_version(db, TOY) == 1
    assert "a" in await _tables(db)
    assert "b" not in await _tables(db)
    # Fixed, it applies.
    fixed = _toy("CREATE TABLE a (v int);", "CREATE TABLE b (v int);")
    assert await migrate(db, TOY, fixed) == [2]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("A" * 21, True),
        ("aZ09_-" * 3 + "xyz", True),
        ("A" * 20, False),
        ("A" * 22, False),
        ("A" * 20 + "!", False),
        ("A" * 20 + " ", False),
        ("A" * 19 + "é", False),  # 21 bytes, 20 characters
        ("A" * 20 + "é", False),  # 21 characters, 22 bytes
        ("A" * 10 + "\n" + "A" * 10, False),
    ],
)
async def test_short_ids_are_21_characters_of_the_id_alphabet(db, value, valid):
    await migrate_storage_tables(db)

    async def cast(conn):
        return await conn.fetchval("SELECT $1::text::short_id", value)

    if valid:
        assert await db.read(cast) == value
    else:
        with pytest.raises(IntegrityViolation, match="short_id_chars"):
            await db.read(cast)
