"""The idempotent batch insert of earnings entries on PostgreSQL.

Idempotency keys live in the unpartitioned ``earnings_keys`` (a unique index on the
partitioned ``earnings`` would have to include ``accrued_at``). A batch is COPYed into a
temporary table, its keys are claimed in one statement (ON CONFLICT DO NOTHING; the statement
returns only the keys that were already taken), the stored content of those is compared with
the batch as raw column tuples (other content: StorageConflict, and the transaction rolls
back), and the entries of the new keys go in with one INSERT ... SELECT. A concurrent writer of
the same key waits on the key's index entry until the first commits, then sees it taken.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from grass.domain.earnings import EarningEntry
from grass.errors import IntegrityViolation, StorageConflict
from grass.postgres.connection import Connection

__all__ = ["ENTRY_COLUMNS", "conflict", "insert_batch", "lock_users", "record"]

_STAGING = "grass_earnings_batch"
#: The earnings table's columns, in the order its rows are copied (here and by the closer).
ENTRY_COLUMNS = (
    "id",
    "user_id",
    "source",
    "amount",
    "idempotency_key",
    "accrued_at",
    "created_at",
    "device_id",
    "ip",
    "bucket_start",
    "referee_id",
    "referral_level",
)
_COLS = ", ".join(ENTRY_COLUMNS)
# No constraints on the staging table: the model validated every value, and the target's
# constraints run once, on the insert. Emptied first: a unit of work may insert twice.
# The staging table has no statistics, so the planner's guesses can be wild: a guess of
# millions of rows turned JIT compilation on, which took longer than the insert itself.
# Custom plans: a key array passed as a parameter is then a constant, which the executor
# hashes; in a generic plan `<> ALL($1)` compares each row with every element.
_PREPARE = f"""
SET LOCAL jit = off;
SET LOCAL plan_cache_mode = force_custom_plan;
SET LOCAL work_mem = '64MB';
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    id text, user_id text, source text, amount bigint, idempotency_key text,
    accrued_at timestamptz, created_at timestamptz, device_id text, ip text,
    bucket_start timestamptz, referee_id text, referral_level smallint
) ON COMMIT DELETE ROWS;
TRUNCATE pg_temp.{_STAGING}
"""
# Claims the batch's keys; returns those that were taken before.
_CLAIM = f"""
WITH claimed AS (
    INSERT INTO earnings_keys (idempotency_key, entry_id, accrued_at, user_id)
    SELECT idempotency_key, id, accrued_at, user_id FROM pg_temp.{_STAGING}
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key
)
SELECT s.idempotency_key FROM pg_temp.{_STAGING} s
WHERE NOT EXISTS (SELECT 1 FROM claimed c WHERE c.idempotency_key = s.idempotency_key)
"""
# The entries of the keys claimed: all of them but the taken ones (usually none, and a
# filter on a hashed array is cheaper than joining the claimed keys back).
_INSERT = f"""
INSERT INTO earnings ({_COLS})
SELECT id, user_id, source, amount, idempotency_key, accrued_at, created_at, device_id::uuid,
       ip::inet, bucket_start, referee_id, referral_level
FROM pg_temp.{_STAGING}
WHERE idempotency_key <> ALL($1::text[])
"""
# The columns of EarningEntry.content(), in its order, as the model holds them.
_CONTENT = """
SELECT e.user_id, e.source, e.amount, e.idempotency_key, e.accrued_at,
       e.device_id::text, host(e.ip), e.bucket_start, e.referee_id, e.referral_level
FROM earnings_keys k
JOIN earnings e ON e.id = k.entry_id AND e.accrued_at = k.accrued_at
WHERE k.idempotency_key = ANY($1::text[])
"""


def record(e: EarningEntry) -> tuple[object, ...]:
    return (
        e.id,
        e.user_id,
        e.source.value,
        e.amount,
        e.idempotency_key,
        e.accrued_at,
        e.created_at,
        e.device_id,
        e.ip,
        e.bucket_start,
        e.referee_id,
        e.referral_level,
    )


_LOCK_USERS = (
    "SELECT array_agg(id) FROM (SELECT id FROM users WHERE id = ANY($1::text[]) FOR KEY SHARE) u"
)


async def lock_users(conn: Connection, user_ids: Collection[str]) -> None:
    """Lock the users a batch of earnings names (FOR KEY SHARE: they cannot be deleted until
    the batch commits), or refuse the batch if one does not exist (migration 0009)."""
    wanted = set(user_ids)
    found = set(await conn.fetchval(_LOCK_USERS, list(wanted)) or ())
    if missing := wanted - found:
        raise IntegrityViolation(
            "foreign key constraint earnings_keys_user violated: no such user",
            details={
                "constraint": "earnings_keys_user",
                "table": "earnings_keys",
                "missing": len(missing),
            },
        )


def conflict(key: str) -> StorageConflict:
    return StorageConflict(
        "idempotency key reused with other content", details={"idempotency_key": key}
    )


async def insert_batch(
    conn: Connection, first: Mapping[str, EarningEntry], records: Sequence[tuple[object, ...]]
) -> set[str]:
    """Insert the batch (``first``: each key's entry; ``records``: their rows) in the caller's
    transaction; return the keys that were already taken (with the same content)."""
    await lock_users(conn, {e.user_id for e in first.values()})
    await conn.execute(_PREPARE)
    await conn.copy_records_to_table(_STAGING, records=records, columns=ENTRY_COLUMNS)
    taken = [r["idempotency_key"] for r in await conn.fetch(_CLAIM)]
    if taken:
        # Raw tuples, not rebuilt models: a retried batch of 100 000 entries spent
        # 4.9 s validating EarningEntry values only to compare them.
        # By index, whatever the statistics say: a month's partition that was never
        # analyzed looks empty, and a plan scanning it once per key ran for minutes.
        await conn.execute("SET LOCAL enable_seqscan = off")
        stored = await conn.fetch(_CONTENT, taken)
        await conn.execute("RESET enable_seqscan")
        for row in stored:
            content = tuple(row.values())
            if content != first[content[3]].content():
                raise conflict(content[3])
    await conn.execute(_INSERT, taken)
    return set(taken)
