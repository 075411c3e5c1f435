"""What the backend factories yield: typed bundles, never looked into by type.

A :class:`StoreBackend` is one storage backend as its factory opened it: the stores, and what
else lives in the same place (the ledger's journal, the store's own anchor if it can hold one,
the web3 outbox, the lock that keeps one leader job across instances). :class:`Backends` adds
the state instances share and the ledger. Code outside :mod:`grass.backends` reads these
fields; it never asks which backend it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from grass.config import Config
from grass.ledger.abc import Anchor, Journal, Ledger
from grass.storage.abc import Storage
from grass.storage.payouts import JobLock
from grass.storage.shared_state import SharedState

if TYPE_CHECKING:  # web3 takes a second to import: only a web3 ledger loads it
    from grass.ledger.web3 import Outbox

#: A readiness probe: returns when the backend answers, raises when it does not.
Check = Callable[[], Awaitable[None]]
READINESS_TIMEOUT = 2.0


async def _no_tables() -> None:
    """A store that keeps the ledger in memory has no tables to create for it."""


@attrs.frozen
class StoreBackend:
    """One storage backend and what else lives in it."""

    name: str
    storage: Storage
    #: The ledger's journal kept in this store (credits always live with the store).
    journal: Journal
    #: Keeps one leader job (the bucket closer) across every instance on this store.
    job_lock: JobLock
    #: A new web3 outbox in this store (signed transactions waiting to be sent).
    new_outbox: Callable[[], Outbox]
    #: The store's own anchor, for ``ledger.backend = postgres``; None where it has none.
    anchor: Anchor | None = None
    #: Brings the ledger's tables in this store up to date (PostgreSQL: the ledger's
    #: migrations); the ledger factory awaits it before the journal, anchor or outbox are used.
    prepare_ledger: Callable[[], Awaitable[object]] = _no_tables
    #: Whether what is written survives the process.
    persistent: bool = False
    checks: Mapping[str, Check] = attrs.field(factory=dict)


@attrs.frozen
class Backends:
    """Every backend the services use, with a readiness check per backend."""

    config: Config
    store: StoreBackend
    shared: SharedState
    ledger: Ledger
    checks: Mapping[str, Check] = attrs.field(factory=dict)

    @property
    def storage(self) -> Storage:
        return self.store.storage

    async def readiness(self) -> dict[str, str]:
        """Each backend that does not answer, with why; empty when all are ready."""
        problems: dict[str, str] = {}
        for name, check in {**self.store.checks, **self.checks}.items():
            try:
                with trio.fail_after(READINESS_TIMEOUT):
                    await check()
            except trio.TooSlowError:
                problems[name] = f"no answer within {READINESS_TIMEOUT:g} s"
            except Exception as exc:
                problems[name] = str(exc) or type(exc).__name__
        return problems
