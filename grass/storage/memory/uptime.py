from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.domain.uptime import UptimeBucket, UptimeDelta, UptimeFlushResult, UptimeStats
from grass.storage.memory._aggregate import by_epoch, by_period
from grass.storage.memory._db import Db, Scope, after_row, in_range, paginate


def _total(buckets: Iterable[UptimeBucket]) -> UptimeStats:
    total = UptimeStats()
    for b in buckets:
        total += b.stats
    return total


def _grouped(buckets: Iterable[UptimeBucket], key: str) -> dict[str, UptimeStats]:
    groups: dict[str, UptimeStats] = {}
    for b in buckets:
        k = b.device_id if key == "device" else b.ip if key == "ip" else b.user_id
        groups[k] = groups.get(k, UptimeStats()) + b.stats
    return dict(sorted(groups.items()))


class MemoryUptimeStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        async with self._scope.op() as db:
            merged: dict[tuple[str, dt.datetime, str], UptimeBucket] = {}
            unknown: set[str] = set()
            foreign: set[str] = set()
            applied = 0
            for n, d in enumerate(deltas, 1):
                await after_row(n)
                device = db.devices.get(d.device_id)
                if device is None or device.user_id != d.user_id:
                    (unknown if device is None else foreign).add(d.device_id)
                    continue
                applied += 1
                before = merged.get(d.key) or db.uptime.get(d.key)
                stats = d.stats if before is None else before.stats + d.stats
                merged[d.key] = UptimeBucket(
                    device_id=d.device_id,
                    user_id=d.user_id,
                    ip=d.ip,
                    bucket_start=d.bucket_start,
                    stats=stats,
                )
            for n, bucket in enumerate(merged.values(), 1):
                db.uptime.save(bucket)
                await after_row(n)
            return UptimeFlushResult(
                applied=applied,
                unknown_devices=frozenset(unknown),
                foreign_devices=frozenset(foreign),
            )

    async def list_buckets(
        self,
        bucket_start: dt.datetime,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[UptimeBucket]:
        async with self._scope.op() as db:
            return paginate(
                db.uptime.group("start", bucket_start),
                lambda b: (b.ip, b.device_id),
                (str, str),
                descending=False,
                cursor=cursor,
                limit=limit,
            )

    async def bucket_starts(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[dt.datetime]:
        async with self._scope.op() as db:
            starts = db.uptime.group_values("start")
            return sorted(
                s for s in starts if isinstance(s, dt.datetime) and in_range(s, since, until)
            )

    async def uptime_stats(
        self,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        ip: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UptimeStats:
        async with self._scope.op() as db:
            rows = _select(db, user_id=user_id, device_id=device_id, since=since, until=until)
            return _total(b for b in rows if ip is None or b.ip == ip)

    async def uptime_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, UptimeStats]:
        async with self._scope.op() as db:
            return _grouped(_select(db, user_id=user_id, since=since, until=until), "device")

    async def uptime_by_ip(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        async with self._scope.op() as db:
            return _grouped(_select(db, user_id=user_id, since=since, until=until), "ip")

    async def uptime_by_user(
        self,
        user_ids: Collection[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        async with self._scope.op() as db:
            rows = [
                b
                for user_id in set(user_ids)
                for b in _select(db, user_id=user_id, since=since, until=until)
            ]
            return _grouped(rows, "user")

    async def uptime_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]:
        async with self._scope.op() as db:
            rows = _select(db, user_id=user_id, device_id=device_id, since=since, until=until)
            return by_period(rows, lambda b: b.bucket_start, lambda b: b.stats.seconds, period, tz)

    async def uptime_by_epoch(self, user_id: str) -> list[EpochTotal]:
        async with self._scope.op() as db:
            return by_epoch(
                db.uptime.group("user", user_id),
                lambda b: b.bucket_start,
                lambda b: b.stats.seconds,
                db.epochs.rows(),
            )


def _select(
    db: Db,
    *,
    user_id: str | None = None,
    device_id: str | None = None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> list[UptimeBucket]:
    if device_id is not None:
        rows = db.uptime.group("device", device_id)
    elif user_id is not None:
        rows = db.uptime.group("user", user_id)
    else:
        rows = list(db.uptime.rows())
    return [
        b
        for b in rows
        if (user_id is None or b.user_id == user_id)
        and (device_id is None or b.device_id == device_id)
        and in_range(b.bucket_start, since, until)
    ]
