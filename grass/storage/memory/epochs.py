from __future__ import annotations

import datetime as dt

from grass.domain.epochs import Epoch, EpochStatus
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.errors import IntegrityViolation, StorageConflict
from grass.storage.memory._db import Scope, found, paginate

_ORDER = {EpochStatus.OPEN: 0, EpochStatus.CLOSING: 1, EpochStatus.SETTLED: 2}


class MemoryEpochStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_epoch(self, epoch: Epoch) -> None:
        async with self._scope.op() as db:
            for other in db.epochs.rows():
                if other.start < epoch.end and epoch.start < other.end:
                    raise StorageConflict(
                        f"epoch {epoch.number} overlaps epoch {other.number}",
                        details={"overlaps": other.number},
                    )
            db.epochs.insert(epoch)

    async def get_epoch(self, number: int) -> Epoch:
        async with self._scope.op() as db:
            return found(db.epochs.get(number), "epoch", number)

    async def epoch_at(self, at: dt.datetime) -> Epoch | None:
        async with self._scope.op() as db:
            return next((e for e in db.epochs.rows() if e.contains(at)), None)

    async def latest_epoch(self) -> Epoch | None:
        async with self._scope.op() as db:
            return max(db.epochs.rows(), key=lambda e: e.number, default=None)

    async def list_epochs(
        self,
        *,
        status: EpochStatus | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Epoch]:
        async with self._scope.op() as db:
            rows = [e for e in db.epochs.rows() if status is None or e.status is status]
            return paginate(
                rows, lambda e: (e.number,), (int,), descending=True, cursor=cursor, limit=limit
            )

    async def update_epoch(self, epoch: Epoch) -> None:
        async with self._scope.op() as db:
            stored = found(db.epochs.get(epoch.number), "epoch", epoch.number)
            if (stored.start, stored.end) != (epoch.start, epoch.end):
                raise IntegrityViolation(f"epoch {epoch.number}: start and end never change")
            if _ORDER[epoch.status] < _ORDER[stored.status]:
                raise IntegrityViolation(
                    f"epoch {epoch.number}: status cannot go from {stored.status} to {epoch.status}"
                )
            db.epochs.save(epoch)
