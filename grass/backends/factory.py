"""``open_backends(config)``: the configured backends, each opened by its own factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from grass import logs
from grass.backends.bundle import Backends, StoreBackend
from grass.backends.ledger import open_ledger
from grass.backends.memory import memory_store, open_memory_store
from grass.backends.postgres import open_postgres_store, postgres_store
from grass.backends.shared import open_shared_state
from grass.config import Config, StorageBackend
from grass.storage.abc import Storage
from grass.storage.memory import MemoryStorage
from grass.storage.postgres.storage import PostgresStorage

log = logs.get("grass.backends")


def open_store(
    config: Config, *, pool_size: int | None = None, maintain: bool = True
) -> AbstractAsyncContextManager[StoreBackend]:
    """The configured storage backend (``pool_size`` and ``maintain``: PostgreSQL only)."""
    if config.storage.backend is StorageBackend.MEMORY:
        return open_memory_store()
    return open_postgres_store(config, pool_size=pool_size, maintain=maintain)


def store_of(storage: Storage) -> StoreBackend:
    """The bundle around a storage opened elsewhere (tests open theirs in a schema of their own)."""
    if isinstance(storage, PostgresStorage):
        return postgres_store(storage)
    if isinstance(storage, MemoryStorage):
        return memory_store(storage)
    raise TypeError(f"no storage backend bundles a {type(storage).__name__}")


@asynccontextmanager
async def open_backends(config: Config, *, instance_id: str = "local") -> AsyncIterator[Backends]:
    """Open the configured backends; everything they own is closed on exit."""
    async with (
        open_store(config) as store,
        open_shared_state(config, instance_id=instance_id) as (shared, checks),
        open_ledger(config, store) as ledger,
    ):
        log.info(
            "backends",
            storage=store.name,
            ledger=config.ledger.backend.value,
            redis=bool(config.redis.url),
        )
        yield Backends(config, store, shared, ledger, checks)
