"""The memory storage backend's factory: everything in process, nothing persisted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from grass import logs
from grass.backends.bundle import StoreBackend
from grass.ledger.memory import MemoryJournal
from grass.storage.memory import MemoryStorage
from grass.storage.memory.payouts import MemoryJobLock

if TYPE_CHECKING:
    from grass.ledger.web3 import Outbox

log = logs.get("grass.backends")


def memory_store(storage: MemoryStorage) -> StoreBackend:
    """The bundle around an open memory storage."""
    return StoreBackend(
        name="memory",
        storage=storage,
        journal=MemoryJournal(),
        job_lock=MemoryJobLock(),
        new_outbox=_memory_outbox,
    )


def _memory_outbox() -> Outbox:
    from grass.ledger.web3 import MemoryOutbox

    return MemoryOutbox()


@asynccontextmanager
async def open_memory_store() -> AsyncIterator[StoreBackend]:
    log.warning("storage is in memory: nothing is persisted, everything is lost at exit")
    yield memory_store(MemoryStorage())
