"""A pooled connection as the stores and the ledger see it, and its result rows.

Every call maps driver errors to storage errors (:mod:`grass.postgres.errors`); the pool
(:mod:`grass.postgres.pool`) hands one to each unit of work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

from grass.postgres.errors import translate_errors

__all__ = ["Connection", "Record"]


class Record(Protocol):
    """A result row (asyncpg.Record): indexable by column name or position."""

    def __getitem__(self, key: str | int, /) -> Any: ...
    def get(self, key: str, default: Any = None, /) -> Any: ...
    def keys(self) -> Iterator[str]: ...
    def values(self) -> Iterator[Any]: ...
    def items(self) -> Iterator[tuple[str, Any]]: ...
    def __len__(self) -> int: ...


class Connection:
    """A pooled connection; every call maps driver errors to storage errors.

    ``raw`` is the triopg connection, for what this face does not cover (LISTEN, prepare).
    Deadlines are Trio's (``trio.fail_after``): a cancelled query is cancelled on the server too.
    """

    __slots__ = ("_target", "raw")

    def __init__(self, raw: Any, target: str) -> None:
        self.raw = raw
        self._target = target

    async def execute(self, query: str, *args: object) -> str:
        with translate_errors(target=self._target):
            return cast(str, await self.raw.execute(query, *args))

    async def executemany(self, query: str, args: Iterable[Sequence[object]]) -> None:
        with translate_errors(target=self._target):
            await self.raw.executemany(query, args)

    async def fetch(self, query: str, *args: object) -> list[Record]:
        with translate_errors(target=self._target):
            return cast("list[Record]", await self.raw.fetch(query, *args))

    async def fetchrow(self, query: str, *args: object) -> Record | None:
        with translate_errors(target=self._target):
            return cast("Record | None", await self.raw.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: object) -> Any:
        with translate_errors(target=self._target):
            return await self.raw.fetchval(query, *args)

    async def copy_records_to_table(
        self,
        table: str,
        *,
        records: Iterable[Sequence[object]],
        columns: Sequence[str] | None = None,
    ) -> str:
        """COPY rows into ``table`` (resolved through search_path; temp tables work too)."""
        with translate_errors(target=self._target):
            return cast(
                str,
                await self.raw.copy_records_to_table(table, records=records, columns=columns),
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A transaction, or inside one a savepoint: an error in the block rolls back only
        the block (a store can catch StorageConflict and go on)."""
        with translate_errors(target=self._target):
            async with self.raw.transaction():
                yield
