"""The anchored ledger's tree cache: a burst of proof requests builds each epoch's tree once."""

from __future__ import annotations

import trio

from grass.ledger.abc import Credit
from grass.ledger.anchored import TREES_KEPT, AnchoredLedger
from grass.ledger.memory import MemoryAnchor, MemoryJournal


class CountingJournal(MemoryJournal):
    def __init__(self) -> None:
        super().__init__()
        self.builds: list[int] = []
        self.fail_next = False

    async def leaves(self, epoch, progress):
        self.builds.append(epoch)
        await trio.sleep(1)  # a big tree takes a while: other requests arrive meanwhile
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the journal went away")
        return await super().leaves(epoch, progress)


async def _settled(epochs: int) -> tuple[AnchoredLedger, CountingJournal]:
    journal = CountingJournal()
    ledger = AnchoredLedger(journal, MemoryAnchor())
    for epoch in range(1, epochs + 1):
        await ledger.record([Credit(key=f"k{epoch}", user_id="alice", amount=5, epoch=epoch)])
        await ledger.settle(epoch)
    journal.builds.clear()
    return ledger, journal


async def test_concurrent_proofs_share_one_build(autojump_clock):
    ledger, journal = await _settled(1)
    ledger._trees.clear()
    proofs = []
    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(lambda: _append(proofs, ledger.proof("alice", 1)))
    assert len(proofs) == 8
    assert len({p.root for p in proofs}) == 1
    assert journal.builds == [1]


async def test_alternating_epochs_are_both_kept(autojump_clock):
    ledger, journal = await _settled(3)
    ledger._trees.clear()
    for _ in range(4):
        for epoch in (2, 3):
            await ledger.proof("alice", epoch)
    assert journal.builds == [2, 3]
    await ledger.proof("alice", 1)  # a third epoch pushes out the least recently used
    assert len(ledger._trees) == TREES_KEPT
    await ledger.proof("alice", 3)
    assert journal.builds == [2, 3, 1]


async def test_a_failed_build_is_retried_by_the_next_request(autojump_clock):
    ledger, journal = await _settled(1)
    ledger._trees.clear()
    journal.fail_next = True
    outcomes: list[str] = []

    async def ask() -> None:
        try:
            await ledger.proof("alice", 1)
            outcomes.append("proof")
        except ConnectionError:
            outcomes.append("failed")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(ask)
    # The first build failed and said so; a waiting request built it again.
    assert sorted(outcomes) == ["failed", "proof", "proof"]
    assert journal.builds == [1, 1]
    assert not ledger._building


async def _append(out: list, awaitable) -> None:
    out.append(await awaitable)
