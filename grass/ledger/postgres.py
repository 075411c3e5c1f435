"""The PostgreSQL journal, and the ledger of it and the PostgreSQL anchor (``postgres_anchor``);
schema: ``postgres_migrations/0001_ledger.sql``.

Each journal method is one transaction run through :meth:`Database.run`, so a deadlock or a
serialization failure re-runs it from the start. Concurrency rules:

- ``record`` (its statements: :mod:`grass.ledger.postgres_record`) takes the closed-epoch row
  FOR SHARE and ``close`` updates it: a credit can never
  slip into an epoch closed meanwhile;
- the idempotency key is UNIQUE: a concurrent insert of the same key waits for the other
  transaction, then is skipped (ON CONFLICT DO NOTHING) and compared like any duplicate;
- rows are written in one order (accounts by user, credits by key, balances by user and epoch)
  so two batches sharing keys or users wait for each other instead of deadlocking.

Semantics are the memory journal's (the conformance suite checks both).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

from grass.errors import StorageConflict
from grass.ledger.abc import (
    AccountConflict,
    Balance,
    Credit,
    HistoryPage,
    InvalidCredit,
    Link,
    Progress,
    RecordResult,
    Settlement,
    SettlementStatus,
    StepHook,
    derived_account,
)
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.leafcopy import LEAVES_QUERY, LeafCopy
from grass.ledger.merkle import to_checksum_address
from grass.ledger.postgres_anchor import PostgresAnchor
from grass.ledger.postgres_record import record_credits
from grass.postgres.connection import Connection, Record
from grass.postgres.pool import Database

__all__ = ["PostgresAnchor", "PostgresJournal", "open_postgres_ledger"]

_BIGINT_MAX = 2**63 - 1

_LATEST_CONFIRMED = (
    "SELECT coalesce(max(epoch), -1) FROM ledger_settlements WHERE status = 'confirmed'"
)

_BALANCES = f"""
SELECT u.user_id,
       coalesce(sum(b.amount) FILTER (WHERE b.epoch <= ({_LATEST_CONFIRMED})), 0) AS settled,
       coalesce(sum(b.amount), 0) AS total
FROM unnest($1::text[]) AS u(user_id)
LEFT JOIN ledger_balances AS b USING (user_id)
GROUP BY u.user_id
"""

# Grouped by user (the key of ledger_accounts, so its columns may be selected): two users never
# share an account, as in the memory journal.
_CUMULATIVE = """
SELECT CASE WHEN a.linked_from <= $1 THEN a.linked ELSE a.derived END AS account,
       sum(c.amount) AS total
FROM ledger_credits AS c
JOIN ledger_accounts AS a USING (user_id)
WHERE c.epoch <= $1
GROUP BY a.user_id
"""

_PUT_SETTLEMENT = """
INSERT INTO ledger_settlements (epoch, root, total, user_count, anchor_ref, status)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (epoch) DO UPDATE SET
    root = excluded.root, total = excluded.total, user_count = excluded.user_count,
    anchor_ref = excluded.anchor_ref, status = excluded.status, updated_at = now()
"""

_SETTLEMENT_COLUMNS = "epoch, root, total, user_count, anchor_ref, status"


def _settlement(row: Record) -> Settlement:
    return Settlement(
        epoch=row["epoch"],
        root=bytes(row["root"]),
        total=int(row["total"]),
        user_count=row["user_count"],
        anchor_ref=row["anchor_ref"],
        status=SettlementStatus(row["status"]),
    )


class PostgresJournal:
    capabilities: frozenset[str] = frozenset({"persistent"})

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, credits: Sequence[Credit]) -> RecordResult:
        for credit in credits:
            if credit.epoch > _BIGINT_MAX:
                raise InvalidCredit("epoch out of range", details={"epoch": credit.epoch})
        if not credits:
            return RecordResult(new=0, duplicates=0)
        users = sorted({c.user_id for c in credits})
        derived = [derived_account(u) for u in users]

        async def work(conn: Connection) -> int:
            return await record_credits(conn, credits, users, derived)

        new = await self._db.run(work)
        return RecordResult(new=new, duplicates=len(credits) - new)

    async def balances(self, user_ids: Sequence[str]) -> dict[str, Balance]:
        rows = await self._db.run(
            lambda conn: conn.fetch(_BALANCES, list(set(user_ids))), readonly=True
        )
        by_user = {row["user_id"]: row for row in rows}
        result = {}
        for user in user_ids:
            row = by_user[user]
            settled = int(row["settled"])
            result[user] = Balance(
                user_id=user, settled=settled, pending=int(row["total"]) - settled
            )
        return result

    async def history(self, user_id: str, cursor: str | None, limit: int) -> HistoryPage:
        if cursor is None:
            before = _BIGINT_MAX
        elif cursor.isdigit() and int(cursor) <= _BIGINT_MAX:
            before = int(cursor)
        else:
            raise InvalidCredit("malformed history cursor", details={"cursor": cursor})
        rows = await self._db.run(
            lambda conn: conn.fetch(
                "SELECT seq, key, user_id, amount, epoch, source, created FROM ledger_credits"
                " WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                user_id,
                before,
                limit + 1,
            ),
            readonly=True,
        )
        page = rows[:limit]
        items = tuple(
            Credit(
                key=row["key"],
                user_id=row["user_id"],
                amount=int(row["amount"]),
                epoch=row["epoch"],
                source=row["source"],
                created=row["created"].astimezone(dt.UTC),
            )
            for row in page
        )
        more = len(rows) > limit
        return HistoryPage(items=items, next_cursor=str(page[-1]["seq"]) if more else None)

    async def link_account(self, user_id: str, account: bytes) -> None:
        async def work(conn: Connection) -> None:
            owner = await conn.fetchval(
                "SELECT user_id FROM ledger_accounts WHERE linked = $1", account
            )
            if owner is not None and owner != user_id:
                raise AccountConflict(
                    "this wallet is linked to another user",
                    details={"account": to_checksum_address(account)},
                )
            current = await conn.fetchval(
                "SELECT linked FROM ledger_accounts WHERE user_id = $1 FOR UPDATE", user_id
            )
            if current is not None:
                if bytes(current) != account:
                    raise AccountConflict(
                        "this user already linked another wallet", details={"user_id": user_id}
                    )
                return
            # FOR SHARE: a settlement closing an epoch meanwhile waits, so the link starts
            # right after the last epoch whose tree may already be built.
            closed = await conn.fetchval("SELECT closed FROM ledger_state FOR SHARE")
            await conn.execute(
                "INSERT INTO ledger_accounts (user_id, derived, linked, linked_from)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE"
                " SET linked = excluded.linked, linked_from = excluded.linked_from",
                user_id,
                derived_account(user_id),
                account,
                closed + 1,
            )

        try:
            await self._db.run(work)
        except StorageConflict as exc:
            # Another user linked this wallet between our read and our write.
            if exc.details.get("constraint") != "ledger_accounts_linked_key":
                raise
            raise AccountConflict(
                "this wallet is linked to another user",
                details={"account": to_checksum_address(account)},
            ) from None

    async def account_of(self, user_id: str, epoch: int) -> bytes:
        row = await self._db.run(
            lambda conn: conn.fetchrow(
                "SELECT linked, linked_from FROM ledger_accounts WHERE user_id = $1", user_id
            ),
            readonly=True,
        )
        if row is not None and row["linked"] is not None and row["linked_from"] <= epoch:
            return bytes(row["linked"])
        return derived_account(user_id)

    async def close(self, epoch: int) -> None:
        await self._db.run(
            lambda conn: conn.execute(
                "UPDATE ledger_state SET closed = greatest(closed, $1)", epoch
            )
        )

    async def cumulative(self, epoch: int) -> dict[bytes, int]:
        rows = await self._db.run(lambda conn: conn.fetch(_CUMULATIVE, epoch), readonly=True)
        return {bytes(row["account"]): int(row["total"]) for row in rows}

    async def leaves(self, epoch: int, progress: Progress) -> list[bytes]:
        async def work(conn: Connection) -> list[bytes]:
            rows = LeafCopy(progress)  # a new one per attempt: a retried run starts over
            await conn.raw.copy_from_query(LEAVES_QUERY, epoch, output=rows.write, format="binary")
            return rows.finish()

        return await self._db.run(work, readonly=True)

    async def put_settlement(self, settlement: Settlement) -> None:
        s = settlement
        await self._db.run(
            lambda conn: conn.execute(
                _PUT_SETTLEMENT,
                s.epoch,
                s.root,
                Decimal(s.total),
                s.user_count,
                s.anchor_ref,
                s.status.value,
            )
        )

    async def settlement(self, epoch: int) -> Settlement | None:
        row = await self._db.run(
            lambda conn: conn.fetchrow(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM ledger_settlements WHERE epoch = $1", epoch
            ),
            readonly=True,
        )
        return None if row is None else _settlement(row)

    async def settlements(self) -> list[Settlement]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                f"SELECT {_SETTLEMENT_COLUMNS} FROM ledger_settlements ORDER BY epoch"
            ),
            readonly=True,
        )
        return [_settlement(row) for row in rows]

    async def export(self, cursor: int, limit: int) -> tuple[list[Credit], int]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                "SELECT seq, key, user_id, amount, epoch, source, created FROM ledger_credits"
                " WHERE seq > $1 ORDER BY seq LIMIT $2",
                cursor,
                limit,
            ),
            readonly=True,
        )
        page = [
            Credit(
                key=row["key"],
                user_id=row["user_id"],
                amount=int(row["amount"]),
                epoch=row["epoch"],
                source=row["source"],
                created=row["created"].astimezone(dt.UTC),
            )
            for row in rows
        ]
        return page, rows[-1]["seq"] if rows else cursor

    async def links(self) -> list[Link]:
        rows = await self._db.run(
            lambda conn: conn.fetch(
                "SELECT user_id, linked, linked_from FROM ledger_accounts"
                " WHERE linked IS NOT NULL ORDER BY linked_from, user_id"
            ),
            readonly=True,
        )
        return [
            Link(user_id=r["user_id"], account=bytes(r["linked"]), first_epoch=r["linked_from"])
            for r in rows
        ]


@asynccontextmanager
async def open_postgres_ledger(
    db: Database, *, step_hook: StepHook | None = None
) -> AsyncIterator[AnchoredLedger]:
    """A ledger whose journal and anchor both live in ``db`` (the ledger's migrations applied)."""
    yield AnchoredLedger(PostgresJournal(db), PostgresAnchor(db), step_hook=step_hook)
