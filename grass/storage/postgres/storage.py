"""The PostgreSQL backend as a :class:`~grass.storage.abc.Storage`.

Standalone, each store call is its own transaction (``Scope(db)``); ``transaction()`` gives
stores sharing one connection and one transaction (``Scope(db, unit)``), with the memory
backend's contract: an exception or a cancellation rolls back, and a failed operation dooms
the unit of work (:class:`TransactionAborted` when the block ends normally).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from grass.errors import TransactionAborted
from grass.postgres.pool import Database, open_postgres
from grass.storage.abc import Storage, Stores
from grass.storage.earnings import EarningsStore
from grass.storage.postgres.accounts import PgAccountStore
from grass.storage.postgres.admin import (
    PgAuditStore,
    PgBanStore,
    PgConnectionIndex,
    PgFlagStore,
)
from grass.storage.postgres.devices import PgDeviceStore
from grass.storage.postgres.epochs import PgEpochStore
from grass.storage.postgres.node_keys import PgNodeKeyStore
from grass.storage.postgres.notifications import PgNotificationStore
from grass.storage.postgres.partitions import ensure_partitions
from grass.storage.postgres.payouts import PgPayoutStore
from grass.storage.postgres.referrals import PgReferralStore
from grass.storage.postgres.schema import migrate_storage_tables
from grass.storage.postgres.scope import Scope, UnitOfWork
from grass.storage.postgres.users import PgUserStore
from grass.storage.uptime import UptimeStore

__all__ = ["PostgresStorage", "PostgresStores", "open_postgres_storage"]


def _store(module: str, name: str, scope: Scope) -> Any:
    # The uptime and earnings stores are imported by name, on first use, so that this module
    # stays importable (and type-checks) while they are built separately; a missing one fails
    # loudly when it is first needed.
    try:
        cls = getattr(importlib.import_module(f"grass.storage.postgres.{module}"), name)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            f"the PostgreSQL backend needs grass.storage.postgres.{module}.{name}"
        ) from exc
    return cls(scope)


class PostgresStores:
    """The stores over one scope: standalone (``PostgresStorage``) or one unit of work."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self.users = PgUserStore(scope)
        self.devices = PgDeviceStore(scope)
        self.referrals = PgReferralStore(scope)
        self.notifications = PgNotificationStore(scope)
        self.epochs = PgEpochStore(scope)
        self.payouts = PgPayoutStore(scope)
        self.accounts = PgAccountStore(scope)
        self.node_keys = PgNodeKeyStore(scope)
        self.bans = PgBanStore(scope)
        self.flags = PgFlagStore(scope)
        self.audit = PgAuditStore(scope)
        self.connections = PgConnectionIndex(scope)
        self._uptime: UptimeStore | None = None
        self._earnings: EarningsStore | None = None

    @property
    def uptime(self) -> UptimeStore:
        if self._uptime is None:
            self._uptime = cast(UptimeStore, _store("uptime", "PgUptimeStore", self._scope))
        return self._uptime

    @property
    def earnings(self) -> EarningsStore:
        if self._earnings is None:
            self._earnings = cast(EarningsStore, _store("earnings", "PgEarningsStore", self._scope))
        return self._earnings


class PostgresStorage(PostgresStores):
    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db
        super().__init__(Scope(db))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresStores]:
        async with self.db.transaction() as conn:
            unit = UnitOfWork(conn)
            try:
                yield PostgresStores(Scope(self.db, unit))
            finally:
                unit.finished = True
            if unit.failed:
                # Raised inside db.transaction(): the transaction is rolled back, not committed.
                raise TransactionAborted("the unit of work was rolled back: an operation failed")


@asynccontextmanager
async def open_postgres_storage(
    dsn: str,
    *,
    replica_dsn: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    schema: str | None = None,
    max_inactive_connection_lifetime: float = 300.0,
) -> AsyncIterator[PostgresStorage]:
    """Open the pool(s), bring the stores' tables up to date and the partitions ahead, yield the
    storage (the ledger's tables are the ledger factory's: grass.backends.ledger).

    ``schema`` puts that schema first on every connection's ``search_path`` (tests give each
    module its own); by default the server's search_path applies.
    """
    settings = None if schema is None else {"search_path": schema}
    async with open_postgres(
        dsn,
        replica_dsn=replica_dsn,
        min_size=min_size,
        max_size=max_size,
        max_inactive_connection_lifetime=max_inactive_connection_lifetime,
        server_settings=settings,
    ) as db:
        await migrate_storage_tables(db)
        await ensure_partitions(db)
        yield PostgresStorage(db)


if TYPE_CHECKING:
    # mypy proves here that the PostgreSQL backend implements every Protocol of grass.storage.abc.
    def _implements(storage: PostgresStorage, tx: PostgresStores) -> tuple[Storage, Stores]:
        return storage, tx
