"""Epochs (DESIGN §5): fixed-length periods numbered from ``rates.epoch_genesis``.

An epoch row is created when first needed; once its end is past and every bucket in it is
closed and credited, it is closed (its totals computed from the earnings and uptime and frozen
in the row), then settled on the ledger (cumulative balances -> Merkle root -> anchor). A
settlement that fails leaves the epoch closing; the next pass tries again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from grass import logs
from grass.config import Config
from grass.domain.epochs import Epoch, EpochStatus, EpochTotals
from grass.domain.pages import MAX_PAGE_SIZE
from grass.ledger.abc import Ledger
from grass.storage.abc import EarningsStore, EpochStore, UptimeStore

log = logs.get(__name__)

AllClosed = Callable[[dt.datetime, dt.datetime], Awaitable[bool]]


class EpochStores(Protocol):
    @property
    def epochs(self) -> EpochStore: ...
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def uptime(self) -> UptimeStore: ...


def _utc(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class EpochService:
    def __init__(self, stores: EpochStores, ledger: Ledger, config: Callable[[], Config]) -> None:
        self._stores = stores
        self._ledger = ledger
        self._config = config

    def number_at(self, at: dt.datetime) -> int:
        rates = self._config().rates
        return max(0, (int(at.timestamp()) - rates.epoch_genesis) // rates.epoch_seconds)

    def bounds(self, number: int) -> tuple[dt.datetime, dt.datetime]:
        rates = self._config().rates
        start = rates.epoch_genesis + number * rates.epoch_seconds
        return _utc(start), _utc(start + rates.epoch_seconds)

    async def ensure(self, number: int) -> Epoch:
        """The epoch's row, created (open) when missing."""
        epochs = self._stores.epochs
        latest = await epochs.latest_epoch()
        if latest is not None and latest.number >= number:
            return await epochs.get_epoch(number)
        first = 0 if latest is None else latest.number + 1
        created = None
        for n in range(first, number + 1):
            start, end = self.bounds(n)
            created = Epoch(number=n, name=f"Epoch {n}", start=start, end=end)
            await epochs.create_epoch(created)
        assert created is not None
        return created

    async def close_due(self, now: dt.datetime, all_closed: AllClosed) -> list[int]:
        """Close and settle every epoch that has ended and whose buckets are all paid."""
        current = self.number_at(now)
        await self.ensure(current)
        done = []
        page = await self._stores.epochs.list_epochs(limit=MAX_PAGE_SIZE)
        for epoch in sorted(page.items, key=lambda e: e.number):
            if epoch.status is EpochStatus.SETTLED or epoch.number >= current:
                continue
            if epoch.status is EpochStatus.OPEN:
                if not await all_closed(epoch.start, epoch.end):
                    break  # epochs close in order
                epoch = epoch.close(await self.totals(epoch))
                await self._stores.epochs.update_epoch(epoch)
            try:
                await self._ledger.settle(epoch.number)
            except Exception as exc:  # the anchor is down: settle again on the next pass
                log.warning("epoch settlement failed", epoch=epoch.number, error=str(exc))
                break
            await self._stores.epochs.update_epoch(epoch.settle())
            done.append(epoch.number)
        return done

    async def totals(self, epoch: Epoch) -> EpochTotals:
        stores = self._stores
        earned = await stores.earnings.earnings_totals(since=epoch.start, until=epoch.end)
        uptime = await stores.uptime.uptime_stats(since=epoch.start, until=epoch.end)
        users = await stores.earnings.count_earning_users(since=epoch.start, until=epoch.end)
        return EpochTotals(points=earned.total, uptime_seconds=uptime.seconds, users=users)
