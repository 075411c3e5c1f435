"""The anchor that posts roots to a :class:`MockChain`, and the mockchain ledger.

Posting is one loop, driven by what the chain says rather than by what we remember, so it is
correct after a crash, a dropped transaction or a reorg:

1. the chain holds a root for the epoch: another root is an AnchorFailed; ours is done once its
   transaction has enough confirmations;
2. our last transaction reverted: AnchorFailed (the ledger marks the settlement failed);
3. our last transaction is still waiting (mempool, or sent less than ``timeout`` ago): wait;
4. otherwise (never sent, dropped, or reorged away and lost): send ``setRoot``.

Step 1 comes first, so a root is never sent for an epoch that has one, and a reorged transaction
that comes back from the mempool is waited for, not sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from grass.ledger.abc import AnchorFailed, Journal, StepHook
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.memory import MemoryJournal
from grass.ledger.mockchain.chain import MockChain


class MockchainAnchor:
    capabilities: frozenset[str] = frozenset(
        {"faults", "reorg", "persistent", "confirmations", "claims"}
    )

    def __init__(
        self, chain: MockChain, *, confirmations: int = 2, timeout: float | None = None
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.chain = chain
        self.required = confirmations
        # A real node cannot tell a dropped transaction from a slow one: give it a few blocks.
        self.timeout = timeout if timeout is not None else 3 * chain.block_time
        self._sent: dict[int, tuple[str, float]] = {}  # epoch -> (last tx hash, sent at)
        #: setRoot transactions sent per epoch (tests check that drops are the only re-sends).
        self.sends: dict[int, int] = {}

    async def post(self, epoch: int, root: bytes) -> str:
        return await self._ensure(epoch, root, 1)

    async def wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        return await self._ensure(epoch, root, self.required)

    async def anchored(self, epoch: int) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return self.chain.roots(epoch)

    async def confirmations(self, ref: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.chain.confirmations(ref)

    async def ref(self, epoch: int) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.chain.root_tx(epoch)

    async def claimed(self, account: bytes) -> int:
        await trio.lowlevel.checkpoint()
        return self.chain.claimed(account)

    async def _ensure(self, epoch: int, root: bytes, confirmations: int) -> str:
        chain = self.chain
        while True:
            on_chain = chain.roots(epoch)
            if on_chain is not None:
                if on_chain != root:
                    raise AnchorFailed(
                        "the chain holds another root for this epoch",
                        details={"epoch": epoch, "anchored": on_chain.hex()},
                    )
                ref = chain.root_tx(epoch)
                assert ref is not None
                if chain.confirmations(ref) >= confirmations:
                    return ref
            elif not self._waiting(epoch):
                self._send(epoch, root)
            await chain.wait_change()

    def _waiting(self, epoch: int) -> bool:
        """Whether our last setRoot for ``epoch`` may still land; raises if it reverted."""
        sent = self._sent.get(epoch)
        if sent is None:
            # Sent by an earlier process that crashed before it saw the block: wait for it.
            return any(
                tx.fn == "setRoot" and tx.args["epoch"] == epoch for tx in self.chain.mempool
            )
        tx_hash, sent_at = sent
        receipt = self.chain.receipt(tx_hash)
        if receipt is not None and not receipt.ok:
            del self._sent[epoch]  # a later settle() retries with a fresh transaction
            raise AnchorFailed(
                "the chain reverted the root's transaction",
                details={"epoch": epoch, "tx": tx_hash, "error": receipt.error},
            )
        return self.chain.in_mempool(tx_hash) or trio.current_time() - sent_at < self.timeout

    def _send(self, epoch: int, root: bytes) -> None:
        latest = self.chain.state.next_epoch
        if epoch < latest:
            # The contract would revert with EpochNotIncreasing; say so without paying for it.
            raise AnchorFailed(
                "a later epoch is already anchored", details={"epoch": epoch, "next": latest}
            )
        tx_hash = self.chain.set_root(epoch, root)
        self._sent[epoch] = (tx_hash, trio.current_time())
        self.sends[epoch] = self.sends.get(epoch, 0) + 1


@asynccontextmanager
async def open_mockchain_ledger(
    path: Path | str | None,
    *,
    block_time: float = 2.0,
    confirmations: int = 2,
    resend_after: float | None = None,
    journal: Journal | None = None,
    step_hook: StepHook | None = None,
) -> AsyncIterator[AnchoredLedger]:
    """A ledger anchored on a simulated chain stored at ``path`` (None: not persisted), whose
    block producer runs for as long as the context is open. ``resend_after``: seconds before a
    root that is neither mined nor in the mempool is sent again (default: three blocks)."""
    chain = MockChain(path, block_time=block_time)
    anchor = MockchainAnchor(chain, confirmations=confirmations, timeout=resend_after)
    async with trio.open_nursery() as nursery:
        await nursery.start(chain.run)
        yield AnchoredLedger(journal or MemoryJournal(), anchor, step_hook=step_hook)
        nursery.cancel_scope.cancel()
