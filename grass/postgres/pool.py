"""The PostgreSQL connection pool: triopg (asyncpg) under Trio through trio-asyncio.

:func:`open_postgres` owns everything: the trio-asyncio loop (when none is running), the
primary pool and an optional replica pool. Work is handed to :class:`Database` as a callable
taking a :class:`Connection`, so a transaction that loses a serialization race or a deadlock
can be run again from the start::

    async def credit(conn: Connection) -> None:
        await conn.execute("UPDATE ...", ...)

    await db.run(credit, isolation="serializable")   # retried on 40001 / 40P01
    rows = await db.read(lambda conn: conn.fetch("SELECT ..."))   # replica when configured

Every driver error crossing this module is translated by :mod:`.errors`; work receives a
:class:`~grass.postgres.connection.Connection`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import trio
import trio_asyncio
import triopg

from grass.errors import StorageUnavailable, sole_exception
from grass.postgres.codecs import init_connection
from grass.postgres.connection import Connection
from grass.postgres.errors import SerializationConflict, translate_errors

__all__ = [
    "Database",
    "Isolation",
    "RetryPolicy",
    "describe_dsn",
    "open_postgres",
]

T = TypeVar("T")
Isolation = Literal["read_committed", "repeatable_read", "serializable"]


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` for messages and logs: the DSN without user or password."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    try:
        port = parts.port or int((query.get("port") or ["5432"])[0])
    except ValueError:
        port = 5432
    database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [""])[0]
    database = database or parts.username or "postgres"
    return f"{host}:{port}/{database}"


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often a unit of work is re-run after a serialization failure or a deadlock.

    Full jitter (a uniform delay up to the exponential bound) spreads the retries of the
    transactions that collided, so they do not collide again in lockstep.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.005, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=0.25, validator=attrs.validators.ge(0))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class _NotStarted(Exception):
    """The connection failed before the unit of work ran: safe to run it elsewhere."""


@attrs.define(kw_only=True)
class _Pool:
    raw: Any
    target: str


class Database:
    """The PostgreSQL backend's handle on its pools; built by :func:`open_postgres`."""

    def __init__(
        self,
        *,
        primary: _Pool,
        replica: _Pool | None,
        retry: RetryPolicy,
        acquire_timeout: float,
        ping_timeout: float,
        rng: random.Random,
    ) -> None:
        self._ping_timeout = ping_timeout
        self._primary = primary
        self._replica = replica
        self._retry = retry
        self._acquire_timeout = acquire_timeout
        self._rng = rng

    @property
    def target(self) -> str:
        """``host:port/database`` of the primary (no credentials)."""
        return self._primary.target

    @property
    def has_replica(self) -> bool:
        return self._replica is not None

    async def run(
        self,
        fn: Callable[[Connection], Awaitable[T]],
        *,
        readonly: bool = False,
        isolation: Isolation = "read_committed",
    ) -> T:
        """Run ``fn`` in one transaction on the primary, re-running it from the start after a
        serialization failure or a deadlock (bounded, jittered back-off) and once after a
        connection found dead before ``fn`` began. ``fn`` must not have effects outside the
        database: it may run more than once."""
        return await self._run(self._primary, fn, readonly=readonly, isolation=isolation)

    async def read(
        self, fn: Callable[[Connection], Awaitable[T]], *, isolation: Isolation = "read_committed"
    ) -> T:
        """Run a read-only ``fn``, on the replica when one is configured (it may lag behind
        the primary: read-your-writes needs ``run(fn, readonly=True)``). A replica that cannot
        be reached falls back to the primary."""
        if self._replica is not None:
            try:
                return await self._run(self._replica, fn, readonly=True, isolation=isolation)
            except StorageUnavailable:
                pass
        return await self._run(self._primary, fn, readonly=True, isolation=isolation)

    @asynccontextmanager
    async def transaction(
        self, *, readonly: bool = False, isolation: Isolation = "read_committed"
    ) -> AsyncIterator[Connection]:
        """One transaction on the primary, committed when the block exits normally. Not
        retried (a block cannot be re-entered): prefer :meth:`run` for SERIALIZABLE work."""
        async with self._acquire(self._primary) as conn:
            with translate_errors(target=self._primary.target):
                async with conn.raw.transaction(isolation=isolation, readonly=readonly):
                    yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A primary connection outside any transaction: for session-level advisory locks
        (held until released or the connection ends), LISTEN, or several transactions in
        a row. Session state is reset when it goes back to the pool."""
        async with self._acquire(self._primary) as conn:
            yield conn

    async def ping(self) -> None:
        """Readiness: every pool answers ``SELECT 1`` within the ping timeout, else
        StorageUnavailable."""
        timeout = self._ping_timeout
        for pool in (self._primary, self._replica):
            if pool is None:
                continue
            with trio.move_on_after(timeout) as scope:
                async with self._acquire(pool) as conn:
                    await conn.fetchval("SELECT 1")
            if scope.cancelled_caught:
                raise StorageUnavailable(
                    f"PostgreSQL at {pool.target} did not answer within {timeout:g} s",
                    details={"target": pool.target},
                )

    async def _run(
        self,
        pool: _Pool,
        fn: Callable[[Connection], Awaitable[T]],
        *,
        readonly: bool,
        isolation: Isolation,
    ) -> T:
        attempt = 0
        retried_dead_connection = False
        while True:
            attempt += 1
            try:
                return await self._run_once(pool, fn, readonly=readonly, isolation=isolation)
            except SerializationConflict:
                if attempt >= self._retry.attempts:
                    raise
                await trio.sleep(self._retry.delay(attempt, self._rng))
            except _NotStarted as exc:
                # A pooled connection the server closed while idle: the work never began, so
                # it can run on a fresh connection. Twice in a row means the server is gone.
                if retried_dead_connection:
                    raise cast(StorageUnavailable, exc.__cause__) from None
                retried_dead_connection = True

    async def _run_once(
        self,
        pool: _Pool,
        fn: Callable[[Connection], Awaitable[T]],
        *,
        readonly: bool,
        isolation: Isolation,
    ) -> T:
        started = False
        async with self._acquire(pool) as conn:
            try:
                with translate_errors(target=pool.target):
                    async with conn.raw.transaction(isolation=isolation, readonly=readonly):
                        started = True
                        return await fn(conn)
            except StorageUnavailable as exc:
                if started:
                    raise
                raise _NotStarted() from exc

    @asynccontextmanager
    async def _acquire(self, pool: _Pool) -> AsyncIterator[Connection]:
        acquiring = pool.raw.acquire()
        with translate_errors(target=pool.target, connecting=True):
            with trio.move_on_after(self._acquire_timeout) as scope:
                raw = await acquiring.__aenter__()
        if scope.cancelled_caught:
            raise StorageUnavailable(
                f"no connection to PostgreSQL at {pool.target} within "
                f"{self._acquire_timeout:g} s (pool exhausted or server unreachable)",
                details={"target": pool.target},
            )
        try:
            yield Connection(raw, pool.target)
        except StorageUnavailable as exc:
            # A connection whose protocol state broke must not serve anyone else; a closed
            # one is dropped by the pool, and a live one (a statement timeout) stays usable.
            if isinstance(exc.__cause__, triopg.InternalClientError):
                raw.terminate()
            raise
        finally:
            with translate_errors(target=pool.target):
                await acquiring.__aexit__(None, None, None)


@asynccontextmanager
async def _asyncio_loop() -> AsyncIterator[None]:
    """trio_asyncio.open_loop, minus the exception groups its nurseries wrap around whatever
    the caller's block raises: callers catch StorageConflict, not a group holding one."""
    try:
        async with trio_asyncio.open_loop():
            yield
    except BaseExceptionGroup as group:
        inner = sole_exception(group)
        if inner is group:
            raise
        raise inner from inner.__cause__


async def _open_pool(
    stack: AsyncExitStack, dsn: str, options: dict[str, Any], *, connect_timeout: float
) -> _Pool:
    timeout = connect_timeout
    target = describe_dsn(dsn)
    raw = triopg.create_pool(dsn, init=init_connection, **options)
    with translate_errors(target=target, connecting=True):
        with trio.move_on_after(timeout) as scope:
            await stack.enter_async_context(raw)
    if scope.cancelled_caught:
        raise StorageUnavailable(
            f"cannot connect to PostgreSQL at {target}: no answer within {timeout:g} s",
            details={"target": target},
        )
    return _Pool(raw=raw, target=target)


@asynccontextmanager
async def open_postgres(
    dsn: str,
    *,
    replica_dsn: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    acquire_timeout: float = 30.0,
    command_timeout: float | None = None,
    statement_cache_size: int = 100,
    max_inactive_connection_lifetime: float = 300.0,
    server_settings: dict[str, str] | None = None,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Database]:
    """Open the pool(s) and yield a :class:`Database`; close them on exit.

    Opens a trio-asyncio loop when the caller has none. Fails fast with StorageUnavailable
    ("cannot connect to PostgreSQL at host:port/db: <reason>") when the server does not
    answer. ``server_settings`` go to every connection (``search_path`` for a schema per test;
    ``statement_cache_size=0`` behind a transaction-pooling pgbouncer).
    ``max_inactive_connection_lifetime`` (0: never) closes connections idle that long; its clock
    is Trio's, so tests on a virtual clock turn it off rather than reconnect mid-jump.
    """
    settings = {"application_name": "grass", **(server_settings or {})}
    options: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "timeout": connect_timeout,
        "command_timeout": command_timeout,
        "statement_cache_size": statement_cache_size,
        "max_inactive_connection_lifetime": max_inactive_connection_lifetime,
        "server_settings": settings,
    }
    async with AsyncExitStack() as stack:
        if trio_asyncio.current_loop.get() is None:
            await stack.enter_async_context(_asyncio_loop())
        primary = await _open_pool(stack, dsn, options, connect_timeout=connect_timeout)
        replica = None
        if replica_dsn is not None:
            # Its own application_name tells the two pools apart in pg_stat_activity.
            replica_settings = {"application_name": "grass-replica", **(server_settings or {})}
            replica = await _open_pool(
                stack,
                replica_dsn,
                {**options, "server_settings": replica_settings},
                connect_timeout=connect_timeout,
            )
        database = Database(
            primary=primary,
            replica=replica,
            retry=retry or RetryPolicy(),
            acquire_timeout=acquire_timeout,
            ping_timeout=connect_timeout,
            rng=rng or random.Random(),
        )
        # min_size=0 opens no connection: make sure the server is really there.
        await database.ping()
        yield database
