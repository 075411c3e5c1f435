"""The bucket closer's store on PostgreSQL: the reads of a bucket's inputs, and
``record_payouts`` (its set-based write: :mod:`grass.storage.postgres.close_write`). The
closer's job lock is :mod:`grass.storage.postgres.job_lock`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.payouts import UptimeLine, bucket_key, slot
from grass.domain.referrals import ReferralStatus
from grass.domain.uptime import UptimeStats
from grass.ids import is_uuid
from grass.postgres.connection import Connection, Record
from grass.storage.payouts import (
    BucketClose,
    ChainLink,
    DeviceWindow,
    FrozenLine,
    KeyedPayout,
    LineScore,
)
from grass.storage.postgres.close_write import CLOSE_COLUMNS, close_rows, write_close
from grass.storage.postgres.earnings import ENTRY_SELECT, entry_of
from grass.storage.postgres.scope import Scope

__all__ = ["PgPayoutStore"]

# A frozen line's price wins over the device's current one (grass.storage.payouts).
_LINES = """
SELECT b.device_id::text AS device_id, b.user_id, host(b.ip) AS ip, b.seconds,
       coalesce(f.device_type, d.type) AS type, coalesce(f.score, d.score) AS score,
       f.score IS NOT NULL AS frozen
FROM uptime_current b
LEFT JOIN bucket_lines f ON f.bucket_start = b.bucket_start AND f.device_id = b.device_id
                        AND f.ip = host(b.ip)
LEFT JOIN devices d ON d.id = b.device_id
WHERE b.bucket_start = $1
"""
_LINK = "referee_id, level, referrer_id, status"
# Sets of ids as arrays computed once (= ANY(ARRAY(...))): the lookups then go through the
# indexes of referrals and of the uptime by user, never a scan of all the uptime.
_BUCKET_USERS = (
    "ARRAY(SELECT DISTINCT user_id FROM uptime_current WHERE bucket_start = $1 AND seconds > 0)"
)
_BUCKET_CHAINS = f"""
SELECT {_LINK} FROM referrals WHERE referee_id = ANY({_BUCKET_USERS}) ORDER BY referee_id, level
"""
_BUCKET_MILESTONES = f"""
SELECT user_id FROM uptime_current
WHERE user_id = ANY(ARRAY(
    SELECT referee_id FROM referrals
    WHERE level = 1 AND status <> 'qualified' AND referee_id = ANY({_BUCKET_USERS})
))
GROUP BY user_id HAVING sum(seconds) >= $2
"""
_BUCKET_SECONDS = """
SELECT bucket_start, sum(seconds) AS seconds FROM uptime_current
WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY bucket_start HAVING sum(seconds) > 0
"""
_PAID = """
SELECT source, user_id, device_id::text AS device_id, host(ip) AS ip, referee_id,
       sum(amount) AS amount
FROM earnings WHERE bucket_start = $1
GROUP BY source, user_id, device_id, ip, referee_id
"""


def _close(row: Record) -> BucketClose:
    return BucketClose(
        bucket_start=row["bucket_start"],
        revision=row["revision"],
        seconds=row["seconds"],
        credited=row["credited"],
        closed_at=row["closed_at"],
    )


def _chains(rows: Sequence[Record]) -> dict[str, tuple[ChainLink, ...]]:
    """Rows ordered by referee and level, as chains."""
    statuses = {s.value: s for s in ReferralStatus}
    chains: dict[str, list[ChainLink]] = {}
    for r in rows:
        link = ChainLink(
            level=r["level"], referrer_id=r["referrer_id"], status=statuses[r["status"]]
        )
        chains.setdefault(r["referee_id"], []).append(link)
    return {referee: tuple(links) for referee, links in chains.items()}


class PgPayoutStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def _bulk(self, query: str, *args: object) -> list[Record]:
        """A read of whole buckets, with hash joins whatever the statistics say: the bucket
        being closed is newer than the last ANALYZE of its partition, so the planner expects
        one row of it and loops over index probes (2x slower for 100 000 rows; against the
        pending deltas, which have no index, far worse)."""

        async def run(conn: Connection) -> list[Record]:
            await conn.execute("SET LOCAL enable_nestloop = off")
            return await conn.fetch(query, *args)

        return await self._scope.read_primary(run)

    async def device_windows(
        self, *, since: dt.datetime, device_ids: Collection[str] | None = None
    ) -> list[DeviceWindow]:
        which = "d.last_seen >= $1" if device_ids is None else "d.id = ANY($2::uuid[])"
        query = f"""
SELECT d.id::text AS device_id, host(d.ip) AS ip, d.first_seen,
       coalesce(sum(b.seconds), 0) AS seconds, coalesce(sum(b.rtt_count), 0) AS rtt_count,
       coalesce(sum(b.rtt_sum_ms), 0) AS rtt_sum_ms, coalesce(max(b.rtt_max_ms), 0) AS rtt_max_ms,
       coalesce(sum(b.reconnects), 0) AS reconnects
FROM devices d
LEFT JOIN uptime_current b ON b.user_id = d.user_id AND b.device_id = d.id
                          AND b.bucket_start >= $1
WHERE {which}
GROUP BY d.id
"""
        args: list[object] = [since]
        if device_ids is not None:
            args.append([i for i in device_ids if is_uuid(i)])
        rows = await self._scope.read_primary(lambda c: c.fetch(query, *args))
        return [
            DeviceWindow(
                device_id=r["device_id"],
                ip=r["ip"],
                first_seen=r["first_seen"],
                stats=UptimeStats(
                    seconds=int(r["seconds"]),
                    rtt_count=int(r["rtt_count"]),
                    rtt_sum_ms=int(r["rtt_sum_ms"]),
                    rtt_max_ms=int(r["rtt_max_ms"]),
                    reconnects=int(r["reconnects"]),
                ),
            )
            for r in rows
        ]

    async def bucket_lines(self, bucket_start: dt.datetime) -> list[tuple[UptimeLine, LineScore]]:
        rows = await self._bulk(_LINES, bucket_start)
        extension = DeviceType.EXTENSION
        types = {t.value: t for t in DeviceType}
        frozen, stored, missing = LineScore.FROZEN, LineScore.STORED, LineScore.MISSING
        return [
            (
                UptimeLine(
                    device_id=r["device_id"],
                    user_id=r["user_id"],
                    ip=r["ip"],
                    seconds=r["seconds"],
                    device_type=extension if r["type"] is None else types[r["type"]],
                    score=r["score"] or 0,
                ),
                frozen if r["frozen"] else missing if r["score"] is None else stored,
            )
            for r in rows
        ]

    async def frozen_lines(self, bucket_start: dt.datetime) -> list[FrozenLine]:
        rows = await self._scope.read_primary(
            lambda c: c.fetch(
                "SELECT bucket_start, device_id::text AS device_id, ip, device_type, score,"
                " revision FROM bucket_lines WHERE bucket_start = $1 ORDER BY device_id::text, ip",
                bucket_start,
            )
        )
        return [
            FrozenLine(
                bucket_start=r["bucket_start"],
                device_id=r["device_id"],
                ip=r["ip"],
                device_type=DeviceType(r["device_type"]),
                score=r["score"],
                revision=r["revision"],
            )
            for r in rows
        ]

    async def drop_frozen_lines(self, *, before: dt.datetime) -> int:
        status = await self._scope.write(
            lambda c: c.execute("DELETE FROM bucket_lines WHERE bucket_start < $1", before)
        )
        return int(status.rsplit(" ", 1)[-1])

    async def referral_chains(
        self, referee_ids: Collection[str]
    ) -> dict[str, tuple[ChainLink, ...]]:
        wanted = sorted(set(referee_ids))
        if not wanted:
            return {}
        rows = await self._scope.read_primary(
            lambda c: c.fetch(
                f"SELECT {_LINK} FROM referrals WHERE referee_id = ANY($1::text[])"
                " ORDER BY referee_id, level",
                wanted,
            )
        )
        return _chains(rows)

    async def bucket_chains(self, bucket_start: dt.datetime) -> dict[str, tuple[ChainLink, ...]]:
        return _chains(await self._bulk(_BUCKET_CHAINS, bucket_start))

    async def bucket_milestones(self, bucket_start: dt.datetime, *, seconds: int) -> set[str]:
        rows = await self._bulk(_BUCKET_MILESTONES, bucket_start, seconds)
        return {r["user_id"] for r in rows}

    async def bucket_seconds(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> dict[dt.datetime, int]:
        rows = await self._bulk(_BUCKET_SECONDS, since, until)
        return {r["bucket_start"]: int(r["seconds"]) for r in rows}

    async def paid_slots(self, bucket_start: dt.datetime) -> dict[str, int]:
        rows = await self._scope.read_primary(lambda c: c.fetch(_PAID, bucket_start))
        paid: dict[str, int] = {}
        for r in rows:
            key = slot(
                EarningSource(r["source"]), r["user_id"], r["device_id"], r["ip"], r["referee_id"]
            )
            paid[key] = paid.get(key, 0) + int(r["amount"])
        return paid

    async def get_close(self, bucket_start: dt.datetime) -> BucketClose | None:
        row = await self._scope.read_primary(
            lambda c: c.fetchrow(
                f"SELECT {CLOSE_COLUMNS} FROM bucket_closes WHERE bucket_start = $1", bucket_start
            )
        )
        return None if row is None else _close(row)

    async def list_closes(self, *, since: dt.datetime, until: dt.datetime) -> list[BucketClose]:
        rows = await self._scope.read_primary(
            lambda c: c.fetch(
                f"SELECT {CLOSE_COLUMNS} FROM bucket_closes WHERE bucket_start >= $1"
                " AND bucket_start < $2 ORDER BY bucket_start",
                since,
                until,
            )
        )
        return [_close(r) for r in rows]

    async def uncredited(self) -> list[BucketClose]:
        rows = await self._scope.read_primary(
            lambda c: c.fetch(
                f"SELECT {CLOSE_COLUMNS} FROM bucket_closes WHERE NOT credited"
                " ORDER BY bucket_start"
            )
        )
        return [_close(r) for r in rows]

    async def record_payouts(
        self,
        close: BucketClose,
        payouts: Sequence[KeyedPayout],
        *,
        frozen: Sequence[UptimeLine] = (),
        accrued_at: dt.datetime,
    ) -> None:
        rows = close_rows(close, payouts, frozen=frozen, accrued_at=accrued_at)

        async def write(conn: Connection) -> None:
            await write_close(conn, close, rows)

        await self._scope.write(write)

    async def revision_entries(self, close: BucketClose) -> list[EarningEntry]:
        prefix = bucket_key(close.bucket_start, close.revision, "")

        async def run(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {ENTRY_SELECT} FROM earnings e WHERE e.bucket_start = $1"
                " AND (starts_with(e.idempotency_key, $2)"
                "      OR (e.source = 'milestone' AND e.created_at = $3))"
                " ORDER BY e.idempotency_key",
                close.bucket_start,
                prefix,
                close.closed_at,
            )

        return [entry_of(r) for r in await self._scope.read_primary(run)]

    async def mark_credited(self, bucket_start: dt.datetime, revision: int) -> None:
        await self._scope.write(
            lambda c: c.execute(
                "UPDATE bucket_closes SET credited = true"
                " WHERE bucket_start = $1 AND revision = $2",
                bucket_start,
                revision,
            )
        )
