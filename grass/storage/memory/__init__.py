"""The memory backend: every store in process, nothing persisted.

Same semantics and errors as PostgreSQL (the conformance suite runs on both). Each operation
takes one ``trio.Lock`` and undoes its own writes if it fails; a unit of work holds the lock from
start to end, so units of work are serialised and never see each other's writes half done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from grass.errors import TransactionAborted
from grass.storage.abc import Storage, Stores
from grass.storage.memory._db import Db, Scope, TxState
from grass.storage.memory.accounts import MemoryAccountStore
from grass.storage.memory.admin import (
    MemoryAuditStore,
    MemoryBanStore,
    MemoryConnectionIndex,
    MemoryFlagStore,
)
from grass.storage.memory.devices import MemoryDeviceStore
from grass.storage.memory.earnings import MemoryEarningsStore
from grass.storage.memory.epochs import MemoryEpochStore
from grass.storage.memory.node_keys import MemoryNodeKeyStore
from grass.storage.memory.notifications import MemoryNotificationStore
from grass.storage.memory.payouts import MemoryPayoutStore
from grass.storage.memory.referrals import MemoryReferralStore
from grass.storage.memory.uptime import MemoryUptimeStore
from grass.storage.memory.users import MemoryUserStore

__all__ = ["MemoryStorage", "MemoryStores"]


class MemoryStores:
    """The stores over one scope: standalone (``MemoryStorage``) or one unit of work."""

    def __init__(self, scope: Scope) -> None:
        self.users = MemoryUserStore(scope)
        self.devices = MemoryDeviceStore(scope)
        self.uptime = MemoryUptimeStore(scope)
        self.earnings = MemoryEarningsStore(scope)
        self.referrals = MemoryReferralStore(scope)
        self.notifications = MemoryNotificationStore(scope)
        self.epochs = MemoryEpochStore(scope)
        self.payouts = MemoryPayoutStore(scope)
        self.accounts = MemoryAccountStore(scope)
        self.node_keys = MemoryNodeKeyStore(scope)
        self.bans = MemoryBanStore(scope)
        self.flags = MemoryFlagStore(scope)
        self.audit = MemoryAuditStore(scope)
        self.connections = MemoryConnectionIndex(scope)


class MemoryStorage(MemoryStores):
    name = "memory"

    def __init__(self) -> None:
        self._db = Db()
        super().__init__(Scope(self._db, None))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryStores]:
        db = self._db
        async with db.lock:
            db.undo_log.begin()
            tx = TxState()
            try:
                yield MemoryStores(Scope(db, tx))
            except BaseException:
                tx.finished = True
                db.undo_log.rollback()
                raise
            tx.finished = True
            if tx.failed:
                db.undo_log.rollback()
                raise TransactionAborted("the unit of work was rolled back: an operation failed")
            db.undo_log.commit()


if TYPE_CHECKING:
    # mypy proves here that the memory backend implements every Protocol of grass.storage.abc.
    def _implements(storage: MemoryStorage, tx: MemoryStores) -> tuple[Storage, Stores]:
        return storage, tx
