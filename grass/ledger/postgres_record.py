"""How the PostgreSQL journal records a batch of credits (:meth:`PostgresJournal.record
<grass.ledger.postgres.PostgresJournal.record>`), in one transaction: the closed epoch read FOR
SHARE, the keys already there read and compared, the new accounts, one sequence value per new
credit drawn in batch order, then the credits and the per-epoch sums in one statement; keys a
concurrent batch recorded meanwhile are compared like any duplicate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from grass.ledger.abc import AlreadySettled, Credit, CreditConflict
from grass.postgres.connection import Connection, Record

__all__ = ["record_credits"]

_EXISTING = """
SELECT key, user_id, amount, epoch, source FROM ledger_credits WHERE key = ANY($1::text[])
"""

_ACCOUNTS = """
INSERT INTO ledger_accounts (user_id, derived)
SELECT * FROM unnest($1::text[], $2::bytea[]) ORDER BY 1
ON CONFLICT (user_id) DO NOTHING
"""

# The credits in key order (lock order), each with the seq drawn for it in batch order; then
# the per-epoch sums of what was really inserted.
_INSERT = """
WITH inserted AS (
    INSERT INTO ledger_credits (seq, key, user_id, amount, epoch, source, created)
    SELECT * FROM unnest(
        $1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::bigint[], $6::text[],
        $7::timestamptz[]
    ) AS t(seq, key, user_id, amount, epoch, source, created)
    ORDER BY key
    ON CONFLICT (key) DO NOTHING
    RETURNING key, user_id, amount, epoch
), summed AS (
    INSERT INTO ledger_balances (user_id, epoch, amount)
    SELECT user_id, epoch, sum(amount) FROM inserted GROUP BY user_id, epoch ORDER BY 1, 2
    ON CONFLICT (user_id, epoch) DO UPDATE SET amount = ledger_balances.amount + excluded.amount
)
SELECT key FROM inserted
"""


def _same(row: Record, credit: Credit) -> bool:
    return (
        row["user_id"] == credit.user_id
        and int(row["amount"]) == credit.amount
        and row["epoch"] == credit.epoch
        and row["source"] == credit.source
    )


def _conflict(credit: Credit) -> CreditConflict:
    return CreditConflict(
        "this idempotency key was recorded with other content", details={"key": credit.key}
    )


def _fresh(credits: Sequence[Credit], existing: Mapping[str, Record], closed: int) -> list[Credit]:
    """The credits to insert, each key once. In batch order, so the first fault met is the one
    raised, as in memory."""
    fresh: dict[str, Credit] = {}
    for credit in credits:
        row = existing.get(credit.key)
        if row is not None:
            if not _same(row, credit):
                raise _conflict(credit)
            continue
        known = fresh.get(credit.key)
        if known is not None:
            if known != credit:
                raise _conflict(credit)
            continue
        if credit.epoch <= closed:
            raise AlreadySettled(
                "this credit's epoch is already settled",
                details={"key": credit.key, "epoch": credit.epoch, "closed": closed},
            )
        fresh[credit.key] = credit
    return list(fresh.values())


async def record_credits(
    conn: Connection, credits: Sequence[Credit], users: list[str], derived: list[bytes]
) -> int:
    """Record the batch (``users``, sorted, with their derived accounts) in the caller's
    transaction; the number of credits inserted."""
    closed = await conn.fetchval("SELECT closed FROM ledger_state FOR SHARE")
    keys = list({c.key for c in credits})
    existing = {row["key"]: row for row in await conn.fetch(_EXISTING, keys)}
    candidates = _fresh(credits, existing, closed)
    if not candidates:
        return 0
    await conn.execute(_ACCOUNTS, users, derived)
    seqs = await conn.fetchval(
        "SELECT array_agg(nextval('ledger_credits_seq')) FROM generate_series(1, $1)",
        len(candidates),
    )
    inserted = {
        row["key"]
        for row in await conn.fetch(
            _INSERT,
            sorted(seqs),
            [c.key for c in candidates],
            [c.user_id for c in candidates],
            [Decimal(c.amount) for c in candidates],
            [c.epoch for c in candidates],
            [c.source for c in candidates],
            [c.created for c in candidates],
        )
    }
    raced = [c for c in candidates if c.key not in inserted]
    if raced:
        # Recorded by a concurrent batch that committed after our first read.
        rows = await conn.fetch(_EXISTING, [c.key for c in raced])
        by_key = {row["key"]: row for row in rows}
        for credit in raced:
            if not _same(by_key[credit.key], credit):
                raise _conflict(credit)
    return len(inserted)
