"""EarningsStore: the earnings entries (grass.domain.earnings).

Part of :class:`grass.storage.abc.Stores` (``storage.earnings``); the conventions of
:mod:`grass.storage.abc` apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Protocol

from grass.domain.earnings import (
    EarningEntry,
    EarningsInsertResult,
    EarningSource,
    EarningsTotals,
    ReferralEarning,
)
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.periods import EpochTotal, Period, PeriodTotal

__all__ = ["EarningsStore"]


class EarningsStore(Protocol):
    """Earnings entries; unique id and idempotency key. Aggregations use ``accrued_at``."""

    async def insert_earnings(self, entries: Sequence[EarningEntry]) -> EarningsInsertResult:
        """Insert a batch. A key already stored (or repeated in the batch) with the same
        ``content()`` is skipped and reported; with other content, or a taken id, the whole batch
        fails with StorageConflict. An unknown user is an IntegrityViolation."""
        ...

    async def find_earning(self, idempotency_key: str) -> EarningEntry | None: ...

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
        """Order: accrued_at, id (descending)."""
        ...

    async def list_bucket_earnings(
        self,
        bucket_start: dt.datetime,
        *,
        source: EarningSource | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        """Entries paying for one bucket (the closer's correction pass). Order: id."""
        ...

    async def earnings_totals(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> EarningsTotals:
        """For one user or (``user_id=None``) everyone; by_source lists every source."""
        ...

    async def count_earning_users(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> int: ...

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
    ) -> list[PeriodTotal]: ...

    async def earnings_by_epoch(self, user_id: str) -> list[EpochTotal]: ...

    async def earnings_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        """Entries naming a device only."""
        ...

    async def earnings_by_ip(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]: ...

    async def referral_earnings(
        self,
        referrer_id: str,
        *,
        referee_ids: Collection[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[ReferralEarning]:
        """Referral credits per (level, referee), ordered so; only those referees' when given
        (a page of the referral list)."""
        ...
