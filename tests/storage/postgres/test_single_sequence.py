"""A database migrated before owners existed (one version sequence for the stores' and the
ledger's files, ``schema_migrations`` keyed by version) is converted by the runner: nothing is
applied twice, and it ends with exactly the schema a fresh database gets."""

from __future__ import annotations

import re

import pytest
import trio

from grass.ledger.postgres_schema import ledger_migrations, migrate_ledger_tables
from grass.postgres.connection import Connection
from grass.postgres.errors import MigrationError
from grass.postgres.migrate import Migration, schema_version
from grass.postgres.pool import Database
from grass.postgres.single_sequence import RENUMBERED
from grass.storage.postgres.schema import migrate_storage_tables, storage_migrations
from tests.storage.postgres.conftest import open_test_database, temporary_schema

# The bookkeeping table as the single-sequence runner created it.
OLD_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# The old sequence's file names (grass/storage/postgres/migrations before the split).
OLD_FILES = [
    "0001_schema",
    "0002_ledger",
    "0003_accounts",
    "0004_admin",
    "0005_bucket_closes",
    "0006_batch_writes",
    "0007_ledger_outbox",
    "0008_bucket_lines",
    "0009_cheaper_id_check",
    "0010_unused_earnings_indexes",
    "0011_earnings_keys_user_check",
    "0012_outbox_by_contract",
    "0013_node_keys",
]


def old_sequence() -> list[tuple[int, Migration]]:
    """The old versions, each with the (unchanged) file now in its owner's directory."""
    owned = {
        "storage": {m.version: m for m in storage_migrations()},
        "ledger": {m.version: m for m in ledger_migrations()},
    }
    sequence = []
    for old, (name, owner, version) in sorted(RENUMBERED.items()):
        migration = owned[owner][version]
        assert migration.name == name
        assert f"{old:04d}_{name}" == OLD_FILES[old - 1]
        sequence.append((old, migration))
    return sequence


async def migrate_the_old_way(db: Database, up_to: int) -> None:
    """What the single-sequence runner did: each file and its row in one transaction."""

    async def apply(conn: Connection) -> None:
        await conn.execute(OLD_TABLE)
        for old, migration in old_sequence()[:up_to]:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    old,
                    migration.name,
                    migration.checksum,
                )

    async with db.connection() as conn:
        await apply(conn)


async def migrate_the_new_way(db: Database) -> dict[str, list[int]]:
    return {
        "storage": await migrate_storage_tables(db),
        "ledger": await migrate_ledger_tables(db),
    }


# Everything a migration may create, read from the catalogs, with the schema's name taken out.
CATALOG = {
    "columns": """
        SELECT c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), c.reloptions::text
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
            AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace""",
    "constraints": """
        SELECT coalesce(c.relname, t.typname), k.conname, k.contype, k.convalidated,
               pg_get_constraintdef(k.oid)
        FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid
        LEFT JOIN pg_type t ON t.oid = k.contypid
        WHERE k.connamespace = current_schema()::regnamespace""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema()""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by
        FROM pg_sequences WHERE schemaname = current_schema()""",
    "functions": """
        SELECT proname, prosrc FROM pg_proc
        WHERE pronamespace = current_schema()::regnamespace""",
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal""",
    "domains": """
        SELECT typname, format_type(typbasetype, typtypmod) FROM pg_type
        WHERE typnamespace = current_schema()::regnamespace AND typtype = 'd'""",
    "partitions": """
        SELECT c.relname, p.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE c.relnamespace = current_schema()::regnamespace""",
    "migrations": """
        SELECT owner, version, name, checksum FROM schema_migrations""",
    "ledger_state": "SELECT singleton, closed FROM ledger_state",
}


async def catalog(db: Database) -> dict[str, list[tuple[str, ...]]]:
    async def read(conn: Connection) -> dict[str, list[tuple[str, ...]]]:
        schema = await conn.fetchval("SELECT current_schema()")
        name = re.compile(rf'\b"?{re.escape(schema)}"?\.')
        found = {}
        for what, query in CATALOG.items():
            rows = await conn.fetch(query)
            found[what] = sorted(tuple(name.sub("", str(v)) for v in row.values()) for row in rows)
        return found

    return await db.read(read)


@pytest.fixture
def schemas(postgres_dsn):
    with (
        temporary_schema(postgres_dsn, "old") as old,
        temporary_schema(postgres_dsn, "fresh") as fresh,
    ):
        yield old, fresh


@pytest.mark.parametrize("up_to", [len(RENUMBERED), 7, 1])
async def test_an_old_database_is_converted_without_applying_anything_again(
    postgres_dsn, schemas, up_to
):
    old_schema, fresh_schema = schemas
    async with (
        open_test_database(postgres_dsn, old_schema) as old,
        open_test_database(postgres_dsn, fresh_schema) as fresh,
    ):
        await migrate_the_old_way(old, up_to)
        # (Two texts: a statement cached on the old table would not run on the new one.)
        before = "SELECT name, applied_at FROM schema_migrations WHERE version > 0"
        applied_before = {
            r["name"]: r["applied_at"] for r in await old.read(lambda c: c.fetch(before))
        }
        applied = await migrate_the_new_way(old)
        # Exactly the files the old runner had not applied yet, each owner from its own numbers.
        pending: dict[str, list[int]] = {"storage": [], "ledger": []}
        for old_version, _ in old_sequence()[up_to:]:
            _, owner, version = RENUMBERED[old_version]
            pending[owner].append(version)
        assert applied == pending
        after = "SELECT name, applied_at FROM schema_migrations"
        rows = await old.read(lambda c: c.fetch(after))
        # The old rows keep their time of application.
        assert {r["name"]: r["applied_at"] for r in rows if r["name"] in applied_before} == (
            applied_before
        )

        await migrate_the_new_way(fresh)
        expected = await catalog(fresh)
        assert all(expected.values())  # every query found something to compare
        assert await catalog(old) == expected
        # Converted once: a rerun finds nothing to do.
        assert await migrate_the_new_way(old) == {"storage": [], "ledger": []}
        assert await schema_version(old, "ledger") == len(ledger_migrations())


async def test_the_conversion_runs_once_whichever_owner_comes_first(postgres_dsn, schemas):
    old_schema, fresh_schema = schemas
    async with (
        open_test_database(postgres_dsn, old_schema) as old,
        open_test_database(postgres_dsn, fresh_schema) as fresh,
    ):
        await migrate_the_old_way(old, len(RENUMBERED))
        results: list[list[int]] = []

        async def ledger_first() -> None:
            results.append(await migrate_ledger_tables(old))

        async def storage_too() -> None:
            results.append(await migrate_storage_tables(old))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ledger_first)
            nursery.start_soon(storage_too)
        assert results == [[], []]
        await migrate_the_new_way(fresh)
        assert await catalog(old) == await catalog(fresh)


async def test_an_old_history_this_code_does_not_know_is_refused(postgres_dsn, schemas):
    old_schema, _ = schemas
    async with open_test_database(postgres_dsn, old_schema) as old:
        await migrate_the_old_way(old, 2)
        await old.run(
            lambda c: c.execute("UPDATE schema_migrations SET name = 'other' WHERE version = 2")
        )
        with pytest.raises(MigrationError, match=r"applied migration 2 \(other\) is unknown"):
            await migrate_storage_tables(old)
        # Nothing was converted.
        assert await schema_version(old, "storage") == 0
