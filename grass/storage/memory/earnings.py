from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from grass.domain.earnings import (
    EarningEntry,
    EarningsInsertResult,
    EarningSource,
    EarningsTotals,
    ReferralEarning,
)
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.errors import StorageConflict
from grass.storage.memory._aggregate import by_epoch, by_period
from grass.storage.memory._db import Db, Scope, after_row, in_range, paginate


class MemoryEarningsStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def insert_earnings(self, entries: Sequence[EarningEntry]) -> EarningsInsertResult:
        async with self._scope.op() as db:
            duplicates: list[str] = []
            for n, entry in enumerate(entries, 1):
                await after_row(n)
                db.require_user(entry.user_id)
                stored = db.earnings.lookup("key", entry.idempotency_key)
                if stored is not None:
                    if stored.content() != entry.content():
                        raise StorageConflict(
                            "idempotency key reused with other content",
                            details={"idempotency_key": entry.idempotency_key},
                        )
                    duplicates.append(entry.idempotency_key)
                    continue
                db.earnings.insert(entry)
            return EarningsInsertResult(
                inserted=len(entries) - len(duplicates), duplicates=tuple(duplicates)
            )

    async def find_earning(self, idempotency_key: str) -> EarningEntry | None:
        async with self._scope.op() as db:
            return db.earnings.lookup("key", idempotency_key)

    async def list_earnings(
        self,
        user_id: str,
        *,
        source: EarningSource | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        async with self._scope.op() as db:
            return paginate(
                _select(db, user_id=user_id, source=source, since=since, until=until),
                lambda e: (micros(e.accrued_at), e.id),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def list_bucket_earnings(
        self,
        bucket_start: dt.datetime,
        *,
        source: EarningSource | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        async with self._scope.op() as db:
            rows = [
                e
                for e in db.earnings.group("bucket", bucket_start)
                if source is None or e.source is source
            ]
            return paginate(
                rows, lambda e: (e.id,), (str,), descending=False, cursor=cursor, limit=limit
            )

    async def earnings_totals(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> EarningsTotals:
        async with self._scope.op() as db:
            by_source = dict.fromkeys(EarningSource, 0)
            for e in _select(db, user_id=user_id, since=since, until=until):
                by_source[e.source] += e.amount
            return EarningsTotals(total=sum(by_source.values()), by_source=by_source)

    async def count_earning_users(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> int:
        async with self._scope.op() as db:
            return len({e.user_id for e in _select(db, since=since, until=until)})

    async def earnings_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: EarningSource | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]:
        async with self._scope.op() as db:
            rows = [
                e
                for e in _select(db, user_id=user_id, source=source, since=since, until=until)
                if device_id is None or e.device_id == device_id
            ]
            return by_period(rows, lambda e: e.accrued_at, lambda e: e.amount, period, tz)

    async def earnings_by_epoch(self, user_id: str) -> list[EpochTotal]:
        async with self._scope.op() as db:
            return by_epoch(
                db.earnings.group("user", user_id),
                lambda e: e.accrued_at,
                lambda e: e.amount,
                db.epochs.rows(),
            )

    async def earnings_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        async with self._scope.op() as db:
            sums: dict[str, int] = {}
            for e in _select(db, user_id=user_id, since=since, until=until):
                if e.device_id is not None:
                    sums[e.device_id] = sums.get(e.device_id, 0) + e.amount
            return dict(sorted(sums.items()))

    async def earnings_by_ip(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        async with self._scope.op() as db:
            sums: dict[str, int] = {}
            for e in _select(db, user_id=user_id, since=since, until=until):
                if e.ip is not None:
                    sums[e.ip] = sums.get(e.ip, 0) + e.amount
            return dict(sorted(sums.items()))

    async def referral_earnings(
        self,
        referrer_id: str,
        *,
        referee_ids: Collection[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[ReferralEarning]:
        wanted = None if referee_ids is None else set(referee_ids)
        async with self._scope.op() as db:
            sums: dict[tuple[int, str], int] = {}
            for e in _select(
                db, user_id=referrer_id, source=EarningSource.REFERRAL, since=since, until=until
            ):
                assert e.referral_level is not None
                assert e.referee_id is not None
                if wanted is not None and e.referee_id not in wanted:
                    continue
                key = (e.referral_level, e.referee_id)
                sums[key] = sums.get(key, 0) + e.amount
            return [
                ReferralEarning(referee_id=referee, level=level, amount=amount)
                for (level, referee), amount in sorted(sums.items())
            ]


def _select(
    db: Db,
    *,
    user_id: str | None = None,
    source: EarningSource | None = None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> list[EarningEntry]:
    rows = db.earnings.rows() if user_id is None else db.earnings.group("user", user_id)
    return [
        e
        for e in rows
        if (source is None or e.source is source) and in_range(e.accrued_at, since, until)
    ]
