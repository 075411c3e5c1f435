"""Ledger backends for the conformance suite (tests/ledger/test_conformance.py).

Every backend is an entry of ``LEDGER_BACKENDS``: a name -> a factory that takes a directory
(``tmp_path``, for backends that keep files) and a step hook, and returns an async context
manager yielding a :class:`Harness`. The ``ledger_harness`` fixture runs each conformance test
once per entry. Tests take ``autojump_clock`` themselves (pytest-trio only uses a clock
that the test function asks for): the mockchain mines on Trio time.

The web3 backends run twice: over the memory journal and outbox, and over the PostgreSQL
journal and outbox (what ``grass serve`` runs with ``GRASS_STORAGE=postgres``).

To add a backend:

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
import trio
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from grass.ledger.abc import Proof, StepHook
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.contract import load_artifact
from grass.ledger.memory import MemoryAnchor, open_memory_ledger
from grass.ledger.mockchain import MockchainAnchor, open_mockchain_ledger
from grass.ledger.postgres import PostgresJournal, open_postgres_ledger
from grass.ledger.postgres_schema import migrate_ledger_tables
from grass.ledger.web3 import PostgresOutbox, Web3Anchor, open_web3_ledger
from grass.ledger.web3.rpc import decode_revert
from grass.postgres.pool import Database
from tests.ledger.evm import EvmNode, anvil_node, anvil_url, eth_tester_node, own_anvil_url
from tests.storage.postgres.conftest import open_test_database, temporary_schema

__all__ = ["anvil_url", "own_anvil_url"]  # fixtures defined in tests/ledger/evm.py

#: Submit ``claim(account, cumulative_amount, proof)`` for a proof; the contract's custom
#: error name if it reverted, else None.
Claim = Callable[[Proof], Awaitable[str | None]]


@attrs.define
class Harness:
    ledger: AnchoredLedger
    anchor_writes: Callable[[int], Awaitable[int]]
    tamper: Callable[[int, bytes], Awaitable[None]]
    path: Path
    claim: Claim | None = None  # on the backends with the "claims" capability


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
        path / "chain.jsonl", block_time=1.0, confirmations=2, step_hook=step_hook
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

        async def claim(proof: Proof) -> str | None:
            tx = chain.claim(
                proof.account, proof.cumulative_amount, list(proof.proof), sender="0x" + "22" * 20
            )
            while (receipt := chain.receipt(tx)) is None:
                await chain.wait_change()
            return receipt.error

        yield Harness(ledger=ledger, anchor_writes=writes, tamper=tamper, path=path, claim=claim)


_LEDGER_TABLES = (
    "ledger_credits, ledger_balances, ledger_accounts, ledger_settlements, ledger_anchored_roots,"
    " ledger_outbox"
)


@attrs.define
class PgLedgerSchema:
    """A migrated schema shared by a test module, emptied by the first open in each test."""

    dsn: str
    name: str
    migrated: bool = False
    emptied: bool = False


@asynccontextmanager
async def _pg_database(schema: PgLedgerSchema) -> AsyncIterator[Database]:
    """A pool on the module's schema: migrated once, emptied by the first open of each test (a
    second open in the same test - a restart - finds the first one's rows)."""
    async with open_test_database(schema.dsn, schema.name, max_size=8) as db:
        if not schema.migrated:
            await migrate_ledger_tables(db)
            schema.migrated = True
        if not schema.emptied:
            await db.run(lambda c: c.execute(f"TRUNCATE {_LEDGER_TABLES} RESTART IDENTITY"))
            await db.run(lambda c: c.execute("UPDATE ledger_state SET closed = -1"))
            schema.emptied = True
        yield db


@asynccontextmanager
async def _postgres(
    path: Path, step_hook: StepHook | None, *, pg_ledger_schema: PgLedgerSchema
) -> AsyncIterator[Harness]:
    async with (
        _pg_database(pg_ledger_schema) as db,
        open_postgres_ledger(db, step_hook=step_hook) as ledger,
    ):

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


@attrs.define
class Deployment:
    """A distributor on a node, with its owner's key: what a test's reopens share."""

    node: EvmNode
    signer: LocalAccount
    address: str


def _deployment(node: EvmNode) -> Deployment:
    signer = node.new_signer()
    return Deployment(node=node, signer=signer, address=node.deploy(signer.address))


@pytest.fixture
def ethtester_deployment() -> Deployment:
    return _deployment(eth_tester_node())


@pytest.fixture
def anvil_deployment(anvil_url: str) -> Deployment:
    return _deployment(anvil_node(anvil_url))


@asynccontextmanager
async def _web3(
    path: Path, step_hook: StepHook | None, *, deployment: Deployment, db: Database | None = None
) -> AsyncIterator[Harness]:
    """The web3 ledger; over ``db``'s journal and outbox when given, else the memory ones."""
    node = deployment.node
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.mine_forever)
        async with open_web3_ledger(
            node.client(deployment.address),
            deployment.signer,
            journal=None if db is None else PostgresJournal(db),
            outbox=None if db is None else PostgresOutbox(db),
            confirmations=2,
            poll_interval=0.02,
            step_hook=step_hook,
        ) as ledger:
            anchor = ledger.anchor
            assert isinstance(anchor, Web3Anchor)

            async def writes(epoch: int) -> int:
                return len(await anchor.client.root_posts(epoch))

            async def tamper(epoch: int, root: bytes) -> None:
                # The anchor now reads a second deployment holding the same roots but this one:
                # the closest a test gets to a chain that disagrees with the journal.
                forged = await node.run(lambda: node.deploy(node.funder))
                contract = node.w3.eth.contract(address=forged, abi=load_artifact().abi)
                for s in await ledger.settlements():
                    posted = root if s.epoch == epoch else s.root
                    fn = contract.functions.setRoot(s.epoch, posted)
                    await node.run(
                        lambda fn=fn: node.w3.eth.wait_for_transaction_receipt(
                            fn.transact({"from": node.funder})
                        )
                    )
                anchor.client.contract = contract

            async def claim(proof: Proof) -> str | None:
                fn = anchor.client.contract.functions.claim(
                    node.w3.to_checksum_address(proof.account),
                    proof.cumulative_amount,
                    list(proof.proof),
                )

                def send() -> str | None:
                    try:
                        fn.call({"from": node.funder})
                    except Exception as exc:
                        error = decode_revert(exc)
                        return error.name if error is not None else repr(exc)
                    tx = fn.transact({"from": node.funder})
                    receipt = node.w3.eth.wait_for_transaction_receipt(tx)
                    assert receipt["status"] == 1
                    return None

                return await node.run(send)

            yield Harness(
                ledger=ledger, anchor_writes=writes, tamper=tamper, path=path, claim=claim
            )
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _web3_ethtester(
    path: Path, step_hook: StepHook | None, *, ethtester_deployment: Deployment
) -> AsyncIterator[Harness]:
    async with _web3(path, step_hook, deployment=ethtester_deployment) as harness:
        yield harness


@asynccontextmanager
async def _web3_anvil(
    path: Path, step_hook: StepHook | None, *, anvil_deployment: Deployment
) -> AsyncIterator[Harness]:
    async with _web3(path, step_hook, deployment=anvil_deployment) as harness:
        yield harness


@asynccontextmanager
async def _web3_ethtester_postgres(
    path: Path,
    step_hook: StepHook | None,
    *,
    ethtester_deployment: Deployment,
    pg_ledger_schema: PgLedgerSchema,
) -> AsyncIterator[Harness]:
    async with (
        _pg_database(pg_ledger_schema) as db,
        _web3(path, step_hook, deployment=ethtester_deployment, db=db) as harness,
    ):
        yield harness


@asynccontextmanager
async def _web3_anvil_postgres(
    path: Path,
    step_hook: StepHook | None,
    *,
    anvil_deployment: Deployment,
    pg_ledger_schema: PgLedgerSchema,
) -> AsyncIterator[Harness]:
    async with (
        _pg_database(pg_ledger_schema) as db,
        _web3(path, step_hook, deployment=anvil_deployment, db=db) as harness,
    ):
        yield harness


HarnessFactory = Callable[..., AbstractAsyncContextManager[Harness]]

LEDGER_BACKENDS: dict[str, HarnessFactory] = {
    "memory": _memory,
    "mockchain": _mockchain,
    "postgres": _postgres,
    "web3-ethtester": _web3_ethtester,
    "web3-anvil": _web3_anvil,
    "web3-ethtester-postgres": _web3_ethtester_postgres,
    "web3-anvil-postgres": _web3_anvil_postgres,
}

#: Fixtures a backend needs, passed to its factory by name.
BACKEND_FIXTURES: dict[str, tuple[str, ...]] = {
    "postgres": ("pg_ledger_schema",),
    "web3-ethtester": ("ethtester_deployment",),
    "web3-anvil": ("anvil_deployment",),
    "web3-ethtester-postgres": ("ethtester_deployment", "pg_ledger_schema"),
    "web3-anvil-postgres": ("anvil_deployment", "pg_ledger_schema"),
}


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
