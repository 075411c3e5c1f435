"""Where the web3 writer keeps each epoch's signed ``setRoot`` transaction before sending it.

The entry is written *before* the transaction is broadcast. After a crash or a retry the writer
finds it and re-broadcasts the same signed bytes: same sender, same nonce, same hash. An
Ethereum account's nonce is used at most once, so however many times those bytes are sent, at
most one of them is mined: a root is never posted twice.

Entries are kept per contract and epoch. A writer sees only its own contract's: a store whose
ledger moves to a newly deployed distributor (``grass ledger migrate --to web3`` after a
redeploy) re-anchors epoch 1 on the new contract instead of waiting, forever, for the old
contract's mined transaction to show a root on the new one.

Two stores, chosen with the journal's: in memory (lost at exit, like the memory journal) and in
PostgreSQL (``grass/ledger/postgres_migrations/0002_ledger_outbox.sql``, keyed by contract since
``0003_outbox_by_contract.sql``).
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs
import rlp
import trio
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3

from grass import logs
from grass.postgres.connection import Connection, Record
from grass.postgres.pool import Database

log = logs.get("grass.ledger.outbox")


class OutboxStatus(enum.StrEnum):
    SENT = "sent"  # signed and (perhaps) broadcast; may still be mined
    MINED = "mined"  # its receipt was seen with status 1
    FAILED = "failed"  # reverted, or its nonce went to another transaction: never mined


@attrs.frozen(kw_only=True, slots=True)
class OutboxEntry:
    #: The distributor's checksum address: what the transaction calls.
    contract: str = attrs.field(validator=attrs.validators.min_len(1))
    epoch: int
    root: bytes
    sender: str
    nonce: int
    tx_hash: str
    raw_tx: bytes = attrs.field(repr=False)
    status: OutboxStatus


def called_contract(raw_tx: bytes) -> str:
    """The checksum address a signed transaction calls (typed EIP-2718 or legacy);
    ValueError if the bytes are not a signed contract call."""
    try:
        if raw_tx and raw_tx[0] <= 0x7F:
            to = TypedTransaction.from_bytes(HexBytes(raw_tx)).as_dict()["to"]
        else:
            to = rlp.decode(raw_tx)[3]
        return str(Web3.to_checksum_address(to))
    except Exception as exc:
        raise ValueError(f"not a signed contract call: {type(exc).__name__}: {exc}") from None


class Outbox(Protocol):
    async def get(self, contract: str, epoch: int) -> OutboxEntry | None: ...

    async def put(self, entry: OutboxEntry) -> None:
        """Insert or replace the entry of the contract and epoch."""
        ...

    async def pending(self, contract: str) -> list[OutboxEntry]:
        """The contract's entries still SENT, by nonce: what a restarted writer must see
        through first."""
        ...

    async def name_contracts(self) -> int:
        """Name the contract of entries stored before the outbox was keyed by contract (read
        from their signed bytes); returns how many were named."""
        ...


class MemoryOutbox:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], OutboxEntry] = {}

    async def get(self, contract: str, epoch: int) -> OutboxEntry | None:
        await trio.lowlevel.checkpoint()
        return self._entries.get((contract, epoch))

    async def put(self, entry: OutboxEntry) -> None:
        await trio.lowlevel.checkpoint()
        self._entries[entry.contract, entry.epoch] = entry

    async def pending(self, contract: str) -> list[OutboxEntry]:
        await trio.lowlevel.checkpoint()
        sent = [
            e
            for e in self._entries.values()
            if e.contract == contract and e.status is OutboxStatus.SENT
        ]
        return sorted(sent, key=lambda e: e.nonce)

    async def name_contracts(self) -> int:
        await trio.lowlevel.checkpoint()
        return 0  # never held an entry without its contract


_COLUMNS = "contract, epoch, root, sender, nonce, tx_hash, raw_tx, status"

#: What the ledger's migration 0003 leaves in the contract column of rows written before it.
_UNNAMED = ""

_PUT = f"""
INSERT INTO ledger_outbox ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (contract, epoch) DO UPDATE SET
    root = excluded.root, sender = excluded.sender, nonce = excluded.nonce,
    tx_hash = excluded.tx_hash, raw_tx = excluded.raw_tx, status = excluded.status,
    updated_at = now()
"""


def _entry(row: Record) -> OutboxEntry:
    return OutboxEntry(
        contract=row["contract"],
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

    async def get(self, contract: str, epoch: int) -> OutboxEntry | None:
        async def work(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM ledger_outbox WHERE contract = $1 AND epoch = $2",
                contract,
                epoch,
            )

        row = await self._db.run(work)
        return None if row is None else _entry(row)

    async def put(self, entry: OutboxEntry) -> None:
        e = entry
        await self._db.run(
            lambda conn: conn.execute(
                _PUT,
                e.contract,
                e.epoch,
                e.root,
                e.sender,
                e.nonce,
                e.tx_hash,
                e.raw_tx,
                e.status.value,
            )
        )

    async def pending(self, contract: str) -> list[OutboxEntry]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {_COLUMNS} FROM ledger_outbox WHERE contract = $1 AND status = 'sent'"
                " ORDER BY nonce",
                contract,
            )
        )
        return [_entry(row) for row in rows]

    async def name_contracts(self) -> int:
        async def work(conn: Connection) -> int:
            rows = await conn.fetch(
                "SELECT epoch, raw_tx FROM ledger_outbox WHERE contract = $1", _UNNAMED
            )
            named = 0
            for row in rows:
                try:
                    contract = called_contract(bytes(row["raw_tx"]))
                except ValueError as exc:
                    # Not a transaction: nothing to see through. Unnamed, no writer sees it.
                    log.warning("outbox entry left unnamed", epoch=row["epoch"], error=str(exc))
                    continue
                status = await conn.execute(
                    "UPDATE ledger_outbox SET contract = $1 WHERE contract = $2 AND epoch = $3"
                    " AND NOT EXISTS (SELECT 1 FROM ledger_outbox WHERE contract = $1"
                    " AND epoch = $3)",
                    contract,
                    _UNNAMED,
                    row["epoch"],
                )
                named += status == "UPDATE 1"
            return named

        return await self._db.run(work)
