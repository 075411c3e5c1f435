"""The bucket closer's store in memory, and the in-process job lock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

from grass import ids
from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.payouts import UptimeLine, bucket_key, slot
from grass.domain.referrals import ReferralStatus
from grass.domain.uptime import UptimeStats
from grass.errors import StorageConflict
from grass.storage.memory._db import Scope, after_row, in_range
from grass.storage.payouts import (
    BucketClose,
    ChainLink,
    DeviceWindow,
    FrozenLine,
    KeyedPayout,
    LineScore,
)

__all__ = ["MemoryJobLock", "MemoryPayoutStore"]


class MemoryPayoutStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def device_windows(
        self, *, since: dt.datetime, device_ids: Collection[str] | None = None
    ) -> list[DeviceWindow]:
        async with self._scope.op() as db:
            if device_ids is None:
                devices = [d for d in db.devices.rows() if d.last_seen >= since]
            else:
                devices = [d for d in map(db.devices.get, device_ids) if d is not None]
            out = []
            for device in devices:
                stats = UptimeStats()
                for bucket in db.uptime.group("device", device.device_id):
                    if bucket.bucket_start >= since:
                        stats = stats + bucket.stats
                out.append(
                    DeviceWindow(
                        device_id=device.device_id,
                        ip=device.ip,
                        first_seen=device.first_seen,
                        stats=stats,
                    )
                )
            return out

    async def bucket_lines(self, bucket_start: dt.datetime) -> list[tuple[UptimeLine, LineScore]]:
        async with self._scope.op() as db:
            out = []
            for bucket in db.uptime.group("start", bucket_start):
                frozen = db.frozen_lines.get((bucket_start, bucket.device_id, bucket.ip))
                device = db.devices.get(bucket.device_id)
                if frozen is not None:
                    how, kind, score = LineScore.FROZEN, frozen.device_type, frozen.score
                else:
                    kind = DeviceType.EXTENSION if device is None else device.type
                    stored = None if device is None else device.score
                    how = LineScore.MISSING if stored is None else LineScore.STORED
                    score = 0 if stored is None else stored.value
                line = UptimeLine(
                    device_id=bucket.device_id,
                    user_id=bucket.user_id,
                    ip=bucket.ip,
                    seconds=bucket.stats.seconds,
                    device_type=kind,
                    score=score,
                )
                out.append((line, how))
            return out

    async def frozen_lines(self, bucket_start: dt.datetime) -> list[FrozenLine]:
        async with self._scope.op() as db:
            rows = db.frozen_lines.group("bucket", bucket_start)
            return sorted(rows, key=lambda f: (f.device_id, f.ip))

    async def drop_frozen_lines(self, *, before: dt.datetime) -> int:
        async with self._scope.op() as db:
            old = [f for f in db.frozen_lines.rows() if f.bucket_start < before]
            for f in old:
                db.frozen_lines.delete((f.bucket_start, f.device_id, f.ip))
            return len(old)

    async def referral_chains(
        self, referee_ids: Collection[str]
    ) -> dict[str, tuple[ChainLink, ...]]:
        async with self._scope.op() as db:
            chains = {}
            for referee in set(referee_ids):
                links = sorted(db.referrals.group("referee", referee), key=lambda r: r.level)
                if links:
                    chains[referee] = tuple(
                        ChainLink(level=r.level, referrer_id=r.referrer_id, status=r.status)
                        for r in links
                    )
            return chains

    async def bucket_chains(self, bucket_start: dt.datetime) -> dict[str, tuple[ChainLink, ...]]:
        return await self.referral_chains(await self._bucket_users(bucket_start))

    async def bucket_milestones(self, bucket_start: dt.datetime, *, seconds: int) -> set[str]:
        users = await self._bucket_users(bucket_start)
        async with self._scope.op() as db:
            return {
                user
                for user in users
                if any(
                    r.level == 1 and r.status is not ReferralStatus.QUALIFIED
                    for r in db.referrals.group("referee", user)
                )
                and sum(b.stats.seconds for b in db.uptime.group("user", user)) >= seconds
            }

    async def _bucket_users(self, bucket_start: dt.datetime) -> set[str]:
        async with self._scope.op() as db:
            return {b.user_id for b in db.uptime.group("start", bucket_start) if b.stats.seconds}

    async def bucket_seconds(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> dict[dt.datetime, int]:
        async with self._scope.op() as db:
            totals: dict[dt.datetime, int] = {}
            for start in db.uptime.group_values("start"):
                assert isinstance(start, dt.datetime)
                if in_range(start, since, until):
                    seconds = sum(b.stats.seconds for b in db.uptime.group("start", start))
                    if seconds:
                        totals[start] = seconds
            return totals

    async def paid_slots(self, bucket_start: dt.datetime) -> dict[str, int]:
        async with self._scope.op() as db:
            paid: dict[str, int] = {}
            for e in db.earnings.group("bucket", bucket_start):
                key = slot(e.source, e.user_id, e.device_id, e.ip, e.referee_id)
                paid[key] = paid.get(key, 0) + e.amount
            return paid

    async def get_close(self, bucket_start: dt.datetime) -> BucketClose | None:
        async with self._scope.op() as db:
            return db.closes.get(bucket_start)

    async def list_closes(self, *, since: dt.datetime, until: dt.datetime) -> list[BucketClose]:
        async with self._scope.op() as db:
            rows = [c for c in db.closes.rows() if in_range(c.bucket_start, since, until)]
            return sorted(rows, key=lambda c: c.bucket_start)

    async def uncredited(self) -> list[BucketClose]:
        async with self._scope.op() as db:
            rows = [c for c in db.closes.rows() if not c.credited]
            return sorted(rows, key=lambda c: c.bucket_start)

    async def record_payouts(
        self,
        close: BucketClose,
        payouts: Sequence[KeyedPayout],
        *,
        frozen: Sequence[UptimeLine] = (),
        accrued_at: dt.datetime,
    ) -> None:
        async with self._scope.op() as db:
            stored = db.closes.get(close.bucket_start)
            expected = 0 if stored is None else stored.revision + 1
            if close.revision != expected:
                raise StorageConflict(
                    f"bucket {close.bucket_start} is at revision {expected - 1}",
                    details={"revision": close.revision},
                )
            for n, item in enumerate(payouts, 1):
                await after_row(n)
                p = item.payout
                db.require_user(p.user_id)
                if db.earnings.lookup("key", item.key) is not None:
                    raise StorageConflict(
                        "idempotency key already used", details={"idempotency_key": item.key}
                    )
                db.earnings.insert(
                    EarningEntry(
                        id=ids.short_id(),
                        user_id=p.user_id,
                        source=p.source,
                        amount=p.amount,
                        idempotency_key=item.key,
                        accrued_at=accrued_at,
                        created_at=close.closed_at,
                        device_id=p.device_id,
                        ip=p.ip,
                        bucket_start=close.bucket_start,
                        referee_id=p.referee_id,
                        referral_level=p.referral_level,
                    )
                )
            for n, line in enumerate(frozen, 1):
                await after_row(n)
                db.frozen_lines.insert(
                    FrozenLine(
                        bucket_start=close.bucket_start,
                        device_id=line.device_id,
                        ip=line.ip,
                        device_type=line.device_type,
                        score=line.score,
                        revision=close.revision,
                    )
                )
            db.closes.save(close)

    async def revision_entries(self, close: BucketClose) -> list[EarningEntry]:
        prefix = bucket_key(close.bucket_start, close.revision, "")
        async with self._scope.op() as db:
            return sorted(
                (
                    e
                    for e in db.earnings.group("bucket", close.bucket_start)
                    if e.idempotency_key.startswith(prefix)
                    or (e.source is EarningSource.MILESTONE and e.created_at == close.closed_at)
                ),
                key=lambda e: e.idempotency_key,
            )

    async def mark_credited(self, bucket_start: dt.datetime, revision: int) -> None:
        async with self._scope.op() as db:
            stored = db.closes.get(bucket_start)
            if stored is not None and stored.revision == revision and not stored.credited:
                db.closes.save(
                    BucketClose(
                        bucket_start=stored.bucket_start,
                        revision=stored.revision,
                        seconds=stored.seconds,
                        credited=True,
                        closed_at=stored.closed_at,
                    )
                )


class MemoryJobLock:
    """One process: a job runs at most once at a time, in this process."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        if name in self._held:
            yield False
            return
        self._held.add(name)
        try:
            yield True
        finally:
            self._held.discard(name)
