"""Where a PostgreSQL store's statements run.

A store is built over a :class:`Scope`. Standalone (``PostgresStorage.users``), every call is
its own transaction through ``Database.run``/``Database.read`` (retried on serialization failure
and deadlock). Inside a unit of work (``storage.transaction()``), every call runs on that unit's
one connection; the first failure dooms the unit, as PostgreSQL itself does, and later calls
raise :class:`TransactionAborted` — the same contract the memory backend keeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from grass.errors import TransactionAborted
from grass.postgres.connection import Connection
from grass.postgres.pool import Database

T = TypeVar("T")

Work = Callable[[Connection], Awaitable[T]]


class UnitOfWork:
    """One open transaction shared by the stores of one ``storage.transaction()`` block."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.failed = False
        self.finished = False

    async def run(self, fn: Work[T]) -> T:
        if self.finished:
            raise RuntimeError("this unit of work has ended: use the storage, not its stores")
        if self.failed:
            raise TransactionAborted("an earlier operation of this unit of work failed")
        try:
            return await fn(self.conn)
        except BaseException:
            self.failed = True
            raise


class Scope:
    def __init__(self, db: Database, unit: UnitOfWork | None = None) -> None:
        self.db = db
        self.unit = unit

    async def write(self, fn: Work[T]) -> T:
        """Run ``fn`` in a read-write transaction (it may be re-run: no effects outside SQL)."""
        if self.unit is not None:
            return await self.unit.run(fn)
        return await self.db.run(fn)

    async def read(self, fn: Work[T]) -> T:
        """Run a read-only ``fn``; standalone reads may go to the replica (dashboard reads)."""
        if self.unit is not None:
            return await self.unit.run(fn)
        return await self.db.read(fn)

    async def read_primary(self, fn: Work[T]) -> T:
        """A read that must see this instance's own latest writes (no replica lag)."""
        if self.unit is not None:
            return await self.unit.run(fn)
        return await self.db.run(fn, readonly=True)
