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
3. add it to ``LEDGER_BACKENDS``; declare what it cannot do in ``ledger.capabilities`` and let
   the tests branch on it - never delete a test for a backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import attrs
import pytest

from grass.ledger.abc import AnchoredLedger, StepHook
from grass.ledger.memory import MemoryAnchor, open_memory_ledger
from grass.ledger.mockchain import MockchainAnchor, open_mockchain_ledger


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


HarnessFactory = Callable[[Path, StepHook | None], AbstractAsyncContextManager[Harness]]

LEDGER_BACKENDS: dict[str, HarnessFactory] = {
    "memory": _memory,
    "mockchain": _mockchain,
}


@pytest.fixture(params=sorted(LEDGER_BACKENDS))
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """Open a harness of the parametrized backend: ``async with ledger_factory(hook) as h``."""
    factory = LEDGER_BACKENDS[request.param]

    def open_harness(step_hook: StepHook | None = None):
        return factory(tmp_path, step_hook)

    return open_harness


@pytest.fixture
async def harness(ledger_factory) -> AsyncIterator[Harness]:
    async with ledger_factory() as h:
        yield h
