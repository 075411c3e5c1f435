"""PostgreSQL fixtures: every test module gets a schema of its own, dropped afterwards.

A schema is isolated through ``search_path`` (the migrations use unqualified names), so test
modules can run side by side on one database and never see each other's rows.

Fixtures:
    pg_schema         module-scoped name of a fresh, empty schema (dropped after the module)
    pg_fresh_schema   the same, for one test (migration tests that need an untouched schema)
    pg_settings       server_settings putting the module's schema first on search_path
    pg_open           ``pg_open(**options)``: open another Database on the module's schema
                      (an async context manager; options go to open_postgres)
    pg_db             a Database on the module's schema (not migrated)
    pg_migrated       the same after the stores' migrations and ensure_partitions()

Store tests reuse ``pg_migrated``; :func:`temporary_schema` serves code that needs a schema of
its own outside pytest fixtures.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import pytest
import trio

from grass.postgres.pool import Database, open_postgres
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.schema import migrate_storage_tables


def schema_settings(schema: str) -> dict[str, str]:
    return {"search_path": schema}


@asynccontextmanager
async def open_test_database(dsn: str, schema: str, **options: Any) -> AsyncIterator[Database]:
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 4)
    settings = {**schema_settings(schema), **options.pop("server_settings", {})}
    async with open_postgres(dsn, server_settings=settings, **options) as db:
        yield db


async def _admin(dsn: str, sql: str) -> None:
    async with open_postgres(dsn, min_size=1, max_size=1) as db, db.connection() as conn:
        await conn.execute(sql)


@contextmanager
def temporary_schema(dsn: str, prefix: str = "t") -> Iterator[str]:
    """Create a uniquely named schema, yield its name, drop it with everything in it.

    Synchronous (its own trio.run) so module-scoped fixtures can use it.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    trio.run(_admin, dsn, f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        trio.run(_admin, dsn, f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(scope="module")
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    with temporary_schema(postgres_dsn) as name:
        yield name


@pytest.fixture
def pg_fresh_schema(postgres_dsn: str) -> Iterator[str]:
    with temporary_schema(postgres_dsn) as name:
        yield name


@pytest.fixture(scope="module")
def pg_settings(pg_schema: str) -> dict[str, str]:
    return schema_settings(pg_schema)


@pytest.fixture
def pg_open(
    postgres_dsn: str, pg_schema: str
) -> Callable[..., AbstractAsyncContextManager[Database]]:
    return functools.partial(open_test_database, postgres_dsn, pg_schema)


@pytest.fixture
async def pg_db(postgres_dsn: str, pg_schema: str) -> AsyncIterator[Database]:
    async with open_test_database(postgres_dsn, pg_schema) as db:
        yield db


@pytest.fixture
async def pg_migrated(pg_db: Database) -> Database:
    await migrate_storage_tables(pg_db)
    await ensure_partitions(pg_db)
    return pg_db
