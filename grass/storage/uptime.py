"""UptimeStore: uptime buckets per device, bucket and IP (grass.domain.uptime).

Part of :class:`grass.storage.abc.Stores` (``storage.uptime``); the conventions of
:mod:`grass.storage.abc` apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Protocol

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.domain.uptime import UptimeBucket, UptimeDelta, UptimeFlushResult, UptimeStats

__all__ = ["UptimeStore"]


class UptimeStore(Protocol):
    """Uptime buckets keyed by (device_id, bucket_start, ip); filters apply to bucket_start."""

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        """One flush: add each delta into its bucket (created at zero when missing); seconds,
        rtt_count, rtt_sum_ms and reconnects add up, rtt_max_ms takes the maximum, user_id
        takes the delta's. Deltas sharing a key in one batch are summed first. Deltas of
        devices that do not exist are skipped and reported (``unknown_devices``), and so are
        deltas naming another user than the device's owner (``foreign_devices``): they never
        change the owner's buckets nor credit anyone."""
        ...

    async def list_buckets(
        self,
        bucket_start: dt.datetime,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[UptimeBucket]:
        """Every bucket starting at ``bucket_start`` (the closer's input). Order: ip, device_id."""
        ...

    async def bucket_starts(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[dt.datetime]:
        """Distinct bucket starts holding uptime, ascending."""
        ...

    async def uptime_stats(
        self,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        ip: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UptimeStats:
        """Sum over the buckets matching every given filter (all buckets when none)."""
        ...

    async def uptime_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, UptimeStats]: ...

    async def uptime_by_ip(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        """Per IP, for one user or (``user_id=None``) for everyone."""
        ...

    async def uptime_by_user(
        self,
        user_ids: Collection[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]: ...

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
        """Seconds per period (bucket_start's period in ``tz``), ascending."""
        ...

    async def uptime_by_epoch(self, user_id: str) -> list[EpochTotal]:
        """Seconds per epoch (the epoch whose range holds bucket_start), ascending."""
        ...
