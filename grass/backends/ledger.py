"""The ledger factory, used by the server and by ``grass ledger``: the anchored ledger on the
configured (or a given) anchor, over the journal kept in the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path

from grass import logs
from grass.backends.bundle import StoreBackend
from grass.config import Config, LedgerBackend
from grass.errors import StartupError
from grass.ledger.abc import Journal
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.memory import MemoryAnchor, open_memory_ledger
from grass.ledger.mockchain import open_mockchain_ledger

log = logs.get("grass.backends")


def open_ledger(
    config: Config,
    store: StoreBackend,
    *,
    backend: LedgerBackend | None = None,
    journal: Journal | None = None,
) -> AbstractAsyncContextManager[AnchoredLedger]:
    """The ledger anchored on ``backend`` (default: ``ledger.backend``). ``journal``: share one
    (``grass ledger migrate`` opens two ledgers on one store); default: the store's, except
    that a memory ledger is all in memory. A ledger using the store first brings the ledger's
    tables there up to date (``store.prepare_ledger``: on PostgreSQL, the ledger's migrations,
    after the stores' that opening the store applied)."""
    settings = config.ledger
    backend = backend or settings.backend
    if backend is LedgerBackend.MEMORY and journal is None:
        return open_memory_ledger()
    opened: AbstractAsyncContextManager[AnchoredLedger]
    journal = journal or store.journal
    if backend is LedgerBackend.MEMORY:
        opened = nullcontext(AnchoredLedger(journal, MemoryAnchor()))
    elif backend is LedgerBackend.POSTGRES:
        if store.anchor is None:
            raise StartupError(
                f"ledger.backend: postgres needs storage.backend = postgres (not {store.name})"
            )
        opened = nullcontext(AnchoredLedger(journal, store.anchor))
    elif backend is LedgerBackend.MOCKCHAIN:
        opened = open_mockchain_ledger(
            Path(settings.mockchain_path) / "chain.jsonl",
            block_time=settings.mockchain_block_time,
            confirmations=settings.confirmations,
            journal=journal,
        )
    else:
        opened = _open_web3_ledger(config, store, journal)
    return _in_store(store, opened)


@asynccontextmanager
async def _in_store(
    store: StoreBackend, opened: AbstractAsyncContextManager[AnchoredLedger]
) -> AsyncIterator[AnchoredLedger]:
    await store.prepare_ledger()
    async with opened as ledger:
        yield ledger


@asynccontextmanager
async def _open_web3_ledger(
    config: Config, store: StoreBackend, journal: Journal
) -> AsyncIterator[AnchoredLedger]:
    # web3 takes a second to import: only a server anchoring on a chain pays for it.
    from grass.ledger.web3 import DistributorClient, connect, load_signer, open_web3_ledger

    settings = config.ledger
    if not (settings.rpc_url and settings.contract_address):
        raise StartupError("the web3 ledger needs ledger.rpc_url and ledger.contract_address")
    signer = load_signer(
        private_key=settings.private_key.reveal(),
        keystore_path=settings.keystore_path,
        password=settings.keystore_password.reveal(),
    )
    client = DistributorClient(
        connect(settings.rpc_url),
        settings.contract_address,
        deployed_at=settings.contract_block or None,  # 0: found once on the chain
    )
    try:
        owner = await client.owner()
    except Exception as exc:
        raise StartupError(
            f"ledger.rpc_url: no distributor answers at {settings.contract_address}: {exc}"
        ) from None
    if owner != signer.address:
        raise StartupError(
            f"ledger: the distributor is owned by {owner}, not by the configured key"
            f" {signer.address}: its setRoot would revert"
        )
    if not store.persistent:
        log.warning("web3 ledger on memory storage: the journal and outbox die with the process")
    async with open_web3_ledger(
        client,
        signer,
        journal=journal,
        outbox=store.new_outbox(),
        confirmations=settings.confirmations,
        poll_interval=settings.poll_interval,
    ) as ledger:
        yield ledger
