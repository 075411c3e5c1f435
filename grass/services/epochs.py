"""Epochs (architecture §5): fixed-length periods numbered from ``rates.epoch_genesis``.

An epoch has a row only once something needs it: a bucket closed in it (the closer), or a look
at the epoch list during it (the earnings API). Epochs without activity have no row and are
never settled one by one: with genesis in 2024 and short demo epochs, a fresh install creates
one row, not thousands, and posts no empty roots.

Once an epoch's end is ``closer.delay`` past (its last bucket's uptime is written by then) and
every bucket in it is closed and credited, it is closed (its totals computed from the earnings
and uptime and frozen in the row), then settled on the ledger (cumulative balances -> Merkle
root -> anchor). An epoch without points is marked settled without a settlement of its own: a
ledger settlement is cumulative, so the next one covers anything credited to it meanwhile. A
settlement that fails leaves the epoch closing; the next pass tries again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from grass import logs
from grass.config import Config
from grass.domain.epochs import Epoch, EpochStatus, EpochTotals
from grass.domain.pages import MAX_PAGE_SIZE
from grass.errors import StorageConflict, StorageNotFound
from grass.ledger.abc import Ledger
from grass.storage.abc import EpochStore, Stores
from grass.storage.earnings import EarningsStore
from grass.storage.uptime import UptimeStore

log = logs.get(__name__)

#: Open and closing epochs are read this many at a time (all of them, page after page).
PAGE_SIZE = MAX_PAGE_SIZE

AllClosed = Callable[[dt.datetime, dt.datetime], Awaitable[bool]]


class EpochStores(Protocol):
    @property
    def epochs(self) -> EpochStore: ...
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def uptime(self) -> UptimeStore: ...
    def transaction(self) -> AbstractAsyncContextManager[Stores]: ...


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
        """The epoch's row, created (open) when missing; only that one."""
        epochs = self._stores.epochs
        try:
            return await epochs.get_epoch(number)
        except StorageNotFound:
            pass
        start, end = self.bounds(number)
        epoch = Epoch(number=number, name=f"Epoch {number}", start=start, end=end)
        try:
            await epochs.create_epoch(epoch)
        except StorageConflict:
            # Another instance (or the API beside the closer) created it meanwhile. A row that
            # overlaps with other bounds (epoch_seconds changed) is not found here, and says so.
            return await epochs.get_epoch(number)
        return epoch

    async def accepts_credits(self, number: int) -> bool:
        """Whether credits may still go to this epoch: it is open (or has no row yet) and the
        ledger has settled no epoch from it on."""
        try:
            epoch = await self._stores.epochs.get_epoch(number)
        except StorageNotFound:
            pass
        else:
            if epoch.status is not EpochStatus.OPEN:
                return False
        latest = await self._ledger.latest_settlement()
        return latest is None or latest < number

    async def credit_epoch(self, accrued_at: dt.datetime, closed_at: dt.datetime) -> int:
        """The ledger epoch of credits accrued at ``accrued_at`` and written at ``closed_at``:
        the epoch they accrued in, or, once that one no longer takes credits (late uptime),
        the epoch they were written in."""
        epoch = self.number_at(accrued_at)
        if await self.accepts_credits(epoch):
            return epoch
        return self.number_at(closed_at)

    async def close_due(self, now: dt.datetime, all_closed: AllClosed) -> list[int]:
        """Close and settle, in order, every epoch that ended ``closer.delay`` ago and whose
        buckets are all paid."""
        current = self.number_at(now)
        delay = dt.timedelta(seconds=self._config().closer.delay)
        done = []
        for epoch in await self._unsettled():
            if epoch.number >= current or epoch.end + delay > now:
                break
            if epoch.status is EpochStatus.OPEN:
                if not await all_closed(epoch.start, epoch.end):
                    break  # epochs close in order
                epoch = epoch.close(await self.totals(epoch))
                await self._stores.epochs.update_epoch(epoch)
            assert epoch.totals is not None
            if epoch.totals.points:
                try:
                    await self._ledger.settle(epoch.number)
                except Exception as exc:  # the anchor is down: settle again on the next pass
                    log.warning("epoch settlement failed", epoch=epoch.number, error=str(exc))
                    break
            await self._stores.epochs.update_epoch(epoch.settle())
            done.append(epoch.number)
        return done

    async def _unsettled(self) -> list[Epoch]:
        """Every open or closing epoch, oldest first (all pages: there are few)."""
        found: list[Epoch] = []
        # On the primary (a unit of work): a replica behind by a moment would hand back an
        # epoch this job has just settled, as still open.
        async with self._stores.transaction() as tx:
            for status in (EpochStatus.OPEN, EpochStatus.CLOSING):
                cursor = None
                while True:
                    page = await tx.epochs.list_epochs(
                        status=status, cursor=cursor, limit=PAGE_SIZE
                    )
                    found.extend(page.items)
                    if (cursor := page.next_cursor) is None:
                        break
        return sorted(found, key=lambda e: e.number)

    async def totals(self, epoch: Epoch) -> EpochTotals:
        """The epoch's totals now, from the primary: they are frozen when it closes, right
        after its last bucket was written, which a replica may not have seen yet."""
        since, until = epoch.start, epoch.end
        async with self._stores.transaction() as tx:
            earned = await tx.earnings.earnings_totals(since=since, until=until)
            uptime = await tx.uptime.uptime_stats(since=since, until=until)
            users = await tx.earnings.count_earning_users(since=since, until=until)
        return EpochTotals(points=earned.total, uptime_seconds=uptime.seconds, users=users)
