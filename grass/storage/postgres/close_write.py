"""The bucket closer's write of one close revision on PostgreSQL (``record_payouts``).

The set-based write path: the keys are COPYed straight into ``earnings_keys`` and the entries
into ``earnings`` (no staging table, no per-row comparison: every key of a close revision is
new by construction, so a key already there is a conflict and the unique index refuses the
COPY), then the lines it priced first into ``bucket_lines`` and the close row, all in the
caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs

from grass import ids
from grass.domain.payouts import UptimeLine
from grass.errors import StorageConflict
from grass.postgres.connection import Connection
from grass.storage.payouts import BucketClose, KeyedPayout
from grass.storage.postgres.earnings_insert import ENTRY_COLUMNS, lock_users

__all__ = ["CLOSE_COLUMNS", "CloseRows", "close_rows", "write_close"]

CLOSE_COLUMNS = "bucket_start, revision, seconds, credited, closed_at"
_FROZEN_COLUMNS = ("bucket_start", "device_id", "ip", "device_type", "score", "revision")
_KEY_COLUMNS = ("idempotency_key", "entry_id", "accrued_at", "user_id")


@attrs.frozen(kw_only=True)
class CloseRows:
    keys: list[tuple[object, ...]]
    entries: list[tuple[object, ...]]
    prices: list[tuple[object, ...]]


def close_rows(
    close: BucketClose,
    payouts: Sequence[KeyedPayout],
    *,
    frozen: Sequence[UptimeLine],
    accrued_at: dt.datetime,
) -> CloseRows:
    """The ``earnings_keys``, ``earnings`` and ``bucket_lines`` rows of a close revision.

    Rows go in the order of the indexes they enter (keys; entry ids, drawn in one go and
    sorted; lines by device and IP): each index then grows at one place instead of at random
    pages, a fifth less server time for a 100 000-device bucket.
    """
    bucket = close.bucket_start
    created_at = close.closed_at
    ordered = sorted(payouts, key=lambda item: item.key)
    entry_ids = sorted(ids.short_ids(len(ordered)))
    keys: list[tuple[object, ...]] = [
        (item.key, entry_id, accrued_at, item.payout.user_id)
        for item, entry_id in zip(ordered, entry_ids, strict=True)
    ]
    entries: list[tuple[object, ...]] = [
        (
            entry_id,
            p.user_id,
            p.source.value,
            p.amount,
            item.key,
            accrued_at,
            created_at,
            p.device_id,
            p.ip,
            bucket,
            p.referee_id,
            p.referral_level,
        )
        for item, entry_id in zip(ordered, entry_ids, strict=True)
        for p in (item.payout,)
    ]
    prices: list[tuple[object, ...]] = sorted(
        (bucket, line.device_id, line.ip, line.device_type.value, line.score, close.revision)
        for line in frozen
    )
    return CloseRows(keys=keys, entries=entries, prices=prices)


async def write_close(conn: Connection, close: BucketClose, rows: CloseRows) -> None:
    """One close revision in the caller's transaction: its keys, entries, first-priced lines
    and close row; StorageConflict unless it is the bucket's next revision."""
    bucket = close.bucket_start
    stored = await conn.fetchval(
        "SELECT revision FROM bucket_closes WHERE bucket_start = $1 FOR UPDATE", bucket
    )
    expected = 0 if stored is None else stored + 1
    if close.revision != expected:
        raise StorageConflict(
            f"bucket {bucket} is at revision {expected - 1}",
            details={"revision": close.revision},
        )
    if rows.keys:
        await lock_users(conn, {str(k[3]) for k in rows.keys})
        await conn.copy_records_to_table("earnings_keys", records=rows.keys, columns=_KEY_COLUMNS)
        await conn.copy_records_to_table("earnings", records=rows.entries, columns=ENTRY_COLUMNS)
    if rows.prices:
        await conn.copy_records_to_table(
            "bucket_lines", records=rows.prices, columns=_FROZEN_COLUMNS
        )
    await conn.execute(
        f"INSERT INTO bucket_closes ({CLOSE_COLUMNS}) VALUES ($1, $2, $3, false, $4)"
        " ON CONFLICT (bucket_start) DO UPDATE SET revision = excluded.revision,"
        " seconds = excluded.seconds, credited = false, closed_at = excluded.closed_at",
        bucket,
        close.revision,
        close.seconds,
        close.closed_at,
    )
