"""Where the web3 writer keeps each epoch's signed ``setRoot`` transaction before sending it.

The entry is written *before* the transaction is broadcast. After a crash or a retry the writer
finds it and re-broadcasts the same signed bytes: same sender, same nonce, same hash. An
Ethereum account's nonce is used at most once, so however many times those bytes are sent, at
most one of them is mined: a root is never posted twice.

Two stores, chosen with the journal's: in memory (lost at exit, like the memory journal) and in
PostgreSQL (``migrations/0007_ledger_outbox.sql``).
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs
import trio

from grass.storage.postgres.pool import Connection, Database, Record


class OutboxStatus(enum.StrEnum):
    SENT = "sent"  # signed and (perhaps) broadcast; may still be mined
    MINED = "mined"  # its receipt was seen with status 1
    FAILED = "failed"  # reverted, or its nonce went to another transaction: never mined


@attrs.frozen(kw_only=True, slots=True)
class OutboxEntry:
    epoch: int
    root: bytes
    sender: str
    nonce: int
    tx_hash: str
    raw_tx: bytes = attrs.field(repr=False)
    status: OutboxStatus


class Outbox(Protocol):
    async def get(self, epoch: int) -> OutboxEntry | None: ...

    async def put(self, entry: OutboxEntry) -> None:
        """Insert or replace the epoch's entry."""
        ...

    async def pending(self) -> list[OutboxEntry]:
        """Entries still SENT, by nonce: what a restarted writer must see through first."""
        ...


class MemoryOutbox:
    def __init__(self) -> None:
        self._entries: dict[int, OutboxEntry] = {}

    async def get(self, epoch: int) -> OutboxEntry | None:
        await trio.lowlevel.checkpoint()
        return self._entries.get(epoch)

    async def put(self, entry: OutboxEntry) -> None:
        await trio.lowlevel.checkpoint()
        self._entries[entry.epoch] = entry

    async def pending(self) -> list[OutboxEntry]:
        await trio.lowlevel.checkpoint()
        sent = [e for e in self._entries.values() if e.status is OutboxStatus.SENT]
        return sorted(sent, key=lambda e: e.nonce)


_COLUMNS = "epoch, root, sender, nonce, tx_hash, raw_tx, status"

_PUT = f"""
INSERT INTO ledger_outbox ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (epoch) DO UPDATE SET
    root = excluded.root, sender = excluded.sender, nonce = excluded.nonce,
    tx_hash = excluded.tx_hash, raw_tx = excluded.raw_tx, status = excluded.status,
    updated_at = now()
"""


def _entry(row: Record) -> OutboxEntry:
    return OutboxEntry(
        epoch=row["epoch"],
        root=bytes(row["root"]),
        sender=row["sender"],
        nonce=row["nonce"],
        tx_hash=row["tx_hash"],
        raw_tx=bytes(row["raw_tx"]),
        status=OutboxStatus(row["status"]),
    )


class PostgresOutbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, epoch: int) -> OutboxEntry | None:
        async def work(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM ledger_outbox WHERE epoch = $1", epoch
            )

        row = await self._db.run(work)
        return None if row is None else _entry(row)

    async def put(self, entry: OutboxEntry) -> None:
        e = entry
        await self._db.run(
            lambda conn: conn.execute(
                _PUT, e.epoch, e.root, e.sender, e.nonce, e.tx_hash, e.raw_tx, e.status.value
            )
        )

    async def pending(self) -> list[OutboxEntry]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {_COLUMNS} FROM ledger_outbox WHERE status = 'sent' ORDER BY nonce"
            )
        )
        return [_entry(row) for row in rows]
