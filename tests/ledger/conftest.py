"""Ledger backends for the conformance suite (tests/ledger/test_conformance.py).

Every backend is an entry of ``LEDGER_BACKENDS``: a name -> a factory that takes a directory
(``tmp_path``, for backends that keep files) and a step hook, and returns an async context
manager yielding a :class:`Harness`. The ``ledger_harness`` fixture runs each conformance test
once per entry. Tests take ``autojump_clock`` themselves (pytest-trio only uses a clock
that the test function asks for): the mockchain mines on Trio time.

To add a backend (e.g. "postgres", "web3"):

1. write an ``@asynccontextmanager`` factory ``(path, step_hook) -> Harness`` that opens the
   ledger (asking pytest for services the usual way: take ``postgres_dsn`` through a fixture and
   close over it, so a missing service skips locally and fails in CI);
2. give the harness ``anchor_writes(epoch)`` (how many roots were written for an epoch, e.g.
   ``RootPosted`` events on web3) and ``tamper(epoch, root)`` (make the anchor hold another root:
   a direct UPDATE for postgres, a second deployment or a storage write for web3);
3. add it to ``LEDGER_BACKENDS`` (and, when it needs fixtures, their names to
   ``BACKEND_FIXTURES``: the factory receives their values as keyword arguments); declare what it cannot do in ``ledger.capabilities`` and let
   the tests branch on it - never delete a test for a backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import attrs
import pytest
from trio.testing import MockClock

from grass.ledger.abc import AnchoredLedger, StepHook
from grass.ledger.memory import MemoryAnchor, open_memory_ledger
from grass.ledger.mockchain import MockchainAnchor, open_mockchain_ledger
from grass.ledger.postgres import open_postgres_ledger
from grass.storage.postgres.migrate import migrate
from tests.storage.postgres.conftest import open_test_database, temporary_schema


@attrs.define
class Harness:
    ledger: AnchoredLedger
    anchor_writes: Callable[[int], Awaitable[int]]
    tamper: Callable[[int, bytes], Awaitable[None]]
    path: Path


@asynccontextmanager
async def _memory(path: Path, step_hook: StepHook | None) -> AsyncIterator[Harness]:
    async with open_memory_ledger(step_hook=step_hook) as ledger:
        anchor = ledger.anchor
        assert isinstance(anchor, MemoryAnchor)

        async def writes(epoch: int) -> int:
            return anchor.writes.get(epoch, 0)

        async def tamper(epoch: int, root: bytes) -> None:
            anchor.tamper(epoch, root)

        yield Harness(ledger=ledger, anchor_writes=writes, tamper=tamper, path=path)


@asynccontextmanager
async def _mockchain(path: Path, step_hook: StepHook | None) -> AsyncIterator[Harness]:
    async with open_mockchain_ledger(
        path / "chain.json", block_time=1.0, confirmations=2, step_hook=step_hook
    ) as ledger:
        anchor = ledger.anchor
        assert isinstance(anchor, MockchainAnchor)
        chain = anchor.chain

        async def writes(epoch: int) -> int:
            # Every setRoot for the epoch that landed, reverted or not: a double post shows here.
            return sum(
                1
                for block in chain.blocks()
                for r in block
                if r.tx.fn == "setRoot" and r.tx.args["epoch"] == epoch
            )

        async def tamper(epoch: int, root: bytes) -> None:
            chain.rewrite_root(epoch, root)

        yield Harness(ledger=ledger, anchor_writes=writes, tamper=tamper, path=path)


_LEDGER_TABLES = (
    "ledger_credits, ledger_balances, ledger_accounts, ledger_settlements, ledger_anchored_roots"
)


@attrs.define
class PgLedgerSchema:
    """A migrated schema shared by a test module, emptied by the first open in each test."""

    dsn: str
    name: str
    migrated: bool = False
    emptied: bool = False


@asynccontextmanager
async def _postgres(
    path: Path, step_hook: StepHook | None, *, pg_ledger_schema: PgLedgerSchema
) -> AsyncIterator[Harness]:
    schema = pg_ledger_schema
    async with open_test_database(schema.dsn, schema.name, max_size=8) as db:
        if not schema.migrated:
            await migrate(db)
            schema.migrated = True
        if not schema.emptied:
            # A second open in the same test (reopen tests) must find the first one's rows.
            await db.run(lambda c: c.execute(f"TRUNCATE {_LEDGER_TABLES} RESTART IDENTITY"))
            await db.run(lambda c: c.execute("UPDATE ledger_state SET closed = -1"))
            schema.emptied = True
        async with open_postgres_ledger(db, step_hook=step_hook) as ledger:

            async def writes(epoch: int) -> int:
                return int(
                    await db.run(
                        lambda c: c.fetchval(
                            "SELECT count(*) FROM ledger_anchored_roots WHERE epoch = $1", epoch
                        )
                    )
                )

            async def tamper(epoch: int, root: bytes) -> None:
                await db.run(
                    lambda c: c.execute(
                        "UPDATE ledger_anchored_roots SET root = $2 WHERE epoch = $1", epoch, root
                    )
                )

            yield Harness(ledger=ledger, anchor_writes=writes, tamper=tamper, path=path)


HarnessFactory = Callable[..., AbstractAsyncContextManager[Harness]]

LEDGER_BACKENDS: dict[str, HarnessFactory] = {
    "memory": _memory,
    "mockchain": _mockchain,
    "postgres": _postgres,
}

#: Fixtures a backend needs, passed to its factory by name.
BACKEND_FIXTURES: dict[str, tuple[str, ...]] = {"postgres": ("pg_ledger_schema",)}


@pytest.fixture(scope="module")
def pg_ledger_module_schema(postgres_dsn: str) -> Iterator[PgLedgerSchema]:
    with temporary_schema(postgres_dsn, prefix="ledger") as name:
        yield PgLedgerSchema(dsn=postgres_dsn, name=name)


@pytest.fixture
def pg_ledger_schema(pg_ledger_module_schema: PgLedgerSchema) -> PgLedgerSchema:
    pg_ledger_module_schema.emptied = False
    return pg_ledger_module_schema


@pytest.fixture
def autojump_clock(request: pytest.FixtureRequest) -> MockClock:
    """Virtual time, except on backends doing network I/O: there the autojump would fire every
    pending timeout (pool acquire, connect) while the process waits for the server."""
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("ledger_factory") if callspec is not None else None
    if backend in BACKEND_FIXTURES:
        return MockClock(rate=1.0)
    return MockClock(autojump_threshold=0)


@pytest.fixture(params=sorted(LEDGER_BACKENDS))
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """Open a harness of the parametrized backend: ``async with ledger_factory(hook) as h``."""
    factory = LEDGER_BACKENDS[request.param]
    services = {
        name: request.getfixturevalue(name) for name in BACKEND_FIXTURES.get(request.param, ())
    }

    def open_harness(step_hook: StepHook | None = None):
        return factory(tmp_path, step_hook, **services)

    return open_harness


@pytest.fixture
async def harness(ledger_factory) -> AsyncIterator[Harness]:
    async with ledger_factory() as h:
        yield h
