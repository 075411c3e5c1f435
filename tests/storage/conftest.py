"""The storage conformance suite's backends and row factories.

Every test in ``tests/storage/test_*.py`` asks for ``storage`` (or, for property tests that
need a fresh store per example, ``open_storage``) and so runs once per entry of :data:`BACKENDS`.

Adding a backend (e.g. PostgreSQL) is one function and one line here::

    @asynccontextmanager
    async def _postgres(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
        dsn = request.getfixturevalue("postgres_dsn")  # skips locally / fails in CI if down
        async with open_postgres_storage(dsn, schema=...) as storage:
            yield storage

    BACKENDS["postgres"] = _postgres

A factory receives the test's ``request`` and must yield an EMPTY storage each time it is
entered (a fresh schema, or truncated tables): property tests enter it once per example. Any
module- or session-scoped set-up (creating the schema once) belongs in the factory's own
fixtures, reached through ``request.getfixturevalue``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from grass.domain.devices import Device, DeviceType
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.notifications import Notification, NotificationType
from grass.domain.referrals import Referral
from grass.domain.uptime import UptimeDelta, UptimeStats
from grass.domain.users import ApiKey, ApiScope, Credentials, NodeKey, Session, User
from grass.ids import new_uuid, short_id, token
from grass.postgres.pool import open_postgres
from grass.storage.abc import Storage
from grass.storage.memory import MemoryStorage
from grass.storage.postgres import open_postgres_storage

Factory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Storage]]


@asynccontextmanager
async def _memory(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    yield MemoryStorage()


# Empties every table of the schema (the migration record aside) in one round trip. DELETE, not
# TRUNCATE: on tables this small it is ~30x faster, and the property tests empty the storage once
# per example. A table still referenced is retried after the others (no order to maintain).
_EMPTY_ALL = """
DO $$
DECLARE
    pending text[];
    name text;
    progress boolean;
BEGIN
    SELECT coalesce(array_agg(relname::text), '{}') INTO pending FROM pg_class
    WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')
        AND NOT relispartition AND relname <> 'schema_migrations';
    LOOP
        progress := false;
        FOREACH name IN ARRAY pending LOOP
            BEGIN
                EXECUTE format('DELETE FROM %I', name);
                pending := array_remove(pending, name);
                progress := true;
            EXCEPTION WHEN foreign_key_violation THEN
                NULL;
            END;
        END LOOP;
        EXIT WHEN cardinality(pending) = 0;
        IF NOT progress THEN
            RAISE EXCEPTION 'cannot empty tables %', pending;
        END IF;
    END LOOP;
END $$
"""


@attrs.define
class _PgSchema:
    name: str
    created: bool = False


async def _pg_admin(dsn: str, sql: str) -> None:
    async with open_postgres(dsn, min_size=1, max_size=1) as db, db.connection() as conn:
        await conn.execute(sql)


@pytest.fixture(scope="module")
def pg_storage_schema(postgres_dsn: str) -> Iterator[_PgSchema]:
    """One schema per test module for the conformance suite, created by the first test using
    it (inside its trio run) and dropped after the module."""
    schema = _PgSchema(name=f"s_{uuid.uuid4().hex[:16]}")
    yield schema
    if schema.created:
        trio.run(_pg_admin, postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema.name}" CASCADE')


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    dsn = request.getfixturevalue("postgres_dsn")  # skips locally / fails in CI if down
    schema = request.getfixturevalue("pg_storage_schema")
    if not schema.created:
        await _pg_admin(dsn, f'CREATE SCHEMA IF NOT EXISTS "{schema.name}"')
        schema.created = True
    # No idle-connection expiry: its clock is Trio's, and a reconnect in the middle of an
    # autojump could see its connect timeout jumped to (tests/engine/test_scenario.py).
    async with open_postgres_storage(
        dsn, schema=schema.name, min_size=1, max_size=8, max_inactive_connection_lifetime=0
    ) as opened:
        async with opened.db.connection() as conn:
            await conn.execute(_EMPTY_ALL)
        yield opened


BACKENDS: dict[str, Factory] = {"memory": _memory, "postgres": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def open_storage(
    request: pytest.FixtureRequest,
) -> Callable[[], AbstractAsyncContextManager[Storage]]:
    """A callable opening a fresh, empty storage of the backend under test."""
    factory = BACKENDS[request.param]
    return lambda: factory(request)


@pytest.fixture
async def storage(
    open_storage: Callable[[], AbstractAsyncContextManager[Storage]],
) -> AsyncIterator[Storage]:
    async with open_storage() as opened:
        yield opened


# --- rows ---------------------------------------------------------------------------------------

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 4, tzinfo=UTC)  # a Monday, 00:00 UTC
HOUR = dt.timedelta(hours=1)
_serial = itertools.count(1)


def at(hours: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def sha(value: str | None = None) -> str:
    return hashlib.sha256((value or token()).encode()).hexdigest()


def make_user(**overrides: Any) -> User:
    fields: dict[str, Any] = {
        "id": short_id(),
        "email": f"user{next(_serial)}@example.com",
        "referral_code": short_id(),
        "credentials": Credentials(password_hash="$argon2id$fake", changed_at=T0),
        "created_at": T0,
    }
    return User(**(fields | overrides))


def make_device(user: User | str, **overrides: Any) -> Device:
    fields: dict[str, Any] = {
        "device_id": new_uuid(),
        "user_id": user if isinstance(user, str) else user.id,
        "type": DeviceType.EXTENSION,
        "ip": "203.0.113.1",
        "first_seen": T0,
        "last_seen": T0,
    }
    return Device(**(fields | overrides))


def make_session(user: User, **overrides: Any) -> Session:
    fields: dict[str, Any] = {
        "token_hash": sha(),
        "user_id": user.id,
        "created_at": T0,
        "expires_at": T0 + dt.timedelta(days=30),
    }
    return Session(**(fields | overrides))


def make_api_key(user: User, **overrides: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "id": short_id(),
        "user_id": user.id,
        "name": "stats",
        "key_hash": sha(),
        "prefix": "gk_abcd",
        "scopes": frozenset({ApiScope.STATS_READ}),
        "created_at": T0,
    }
    return ApiKey(**(fields | overrides))


def make_node_key(user: User, **overrides: Any) -> NodeKey:
    fields: dict[str, Any] = {
        "id": short_id(),
        "user_id": user.id,
        "name": "home",
        "key_hash": sha(),
        "prefix": "gn_abcd",
        "created_at": T0,
    }
    return NodeKey(**(fields | overrides))


def make_entry(user: User | str, **overrides: Any) -> EarningEntry:
    fields: dict[str, Any] = {
        "id": short_id(),
        "user_id": user if isinstance(user, str) else user.id,
        "source": EarningSource.UPTIME,
        "amount": 1_000,
        "idempotency_key": f"key-{short_id()}",
        "accrued_at": T0,
        "created_at": T0,
    }
    return EarningEntry(**(fields | overrides))


def make_notification(user: User, **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "id": short_id(),
        "user_id": user.id,
        "type": NotificationType.DEVICE_OFFLINE,
        "payload": {"device_id": "x"},
        "created_at": T0,
    }
    return Notification(**(fields | overrides))


def make_referral(referrer: User, referee: User, level: int = 1, **overrides: Any) -> Referral:
    fields: dict[str, Any] = {
        "referrer_id": referrer.id,
        "referee_id": referee.id,
        "level": level,
        "code": referrer.referral_code,
        "created_at": T0,
    }
    return Referral(**(fields | overrides))


def delta(
    device: Device,
    start: dt.datetime = T0,
    seconds: int = 60,
    *,
    ip: str | None = None,
    **stats: int,
) -> UptimeDelta:
    return UptimeDelta(
        device_id=device.device_id,
        user_id=device.user_id,
        ip=ip or device.ip or "203.0.113.1",
        bucket_start=start,
        stats=UptimeStats(seconds=seconds, **stats),
    )


async def add_user(storage: Storage, **overrides: Any) -> User:
    user = make_user(**overrides)
    await storage.users.create_user(user)
    return user


async def add_device(storage: Storage, user: User, **overrides: Any) -> Device:
    device = make_device(user, **overrides)
    await storage.devices.create_device(device)
    return device


async def collect(list_page: Callable[..., Any], limit: int) -> list[Any]:
    """Every item of a paginated list, walking the cursors."""
    items: list[Any] = []
    cursor = None
    while True:
        page = await list_page(cursor=cursor, limit=limit)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit
        cursor = page.next_cursor
