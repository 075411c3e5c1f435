"""What every ledger backend must do around settlements: restarts after a crash, the leaves
read from the journal, progress, and each anchor's own references (backends: conftest.py)."""

from __future__ import annotations

import pytest

from grass.ledger.abc import SETTLE_STEPS, SettlementStatus
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.memory import MemoryAnchor
from grass.ledger.merkle import MAX_AMOUNT, InvalidMerkleInput, leaf_data
from tests.ledger.test_conformance import WALLET, Crash, credit


@pytest.mark.parametrize("step", SETTLE_STEPS)
async def test_crash_at_any_step_then_a_restart_anchors_once(ledger_factory, step, autojump_clock):
    async def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    async with ledger_factory(crash) as h:
        await h.ledger.record([credit("a1"), credit("b1", user="bob", amount=2)])
        await h.ledger.record([credit("a2", epoch=2, amount=3)])
        with pytest.raises(Crash):
            await h.ledger.settle(1)
        durable = all(
            "persistent" in part.capabilities for part in (h.ledger.journal, h.ledger.anchor)
        )
    # A new process: a new pool, a new writer task with its own nonces, a new ledger.
    async with ledger_factory() as h:
        ledger = h.ledger
        if not durable:
            # The journal died with the process: nothing to re-run, and it says so.
            assert await ledger.journal.settlements() == []
            assert (await ledger.balance("alice")).total == 0
            return
        first = await ledger.settle(1)
        assert first.status is SettlementStatus.CONFIRMED
        second = await ledger.settle(2)
        for epoch in (1, 2):
            assert await h.anchor_writes(epoch) == 1
        assert (await ledger.settlement(1)).anchor_ref == first.anchor_ref
        report = await ledger.verify()
        assert report.ok, report
        assert [e.anchored_root for e in report.epochs] == [first.root, second.root]
        assert (first.total, first.user_count) == (102, 2)


async def test_leaves_are_the_cumulative_balances(harness, autojump_clock):
    ledger = harness.ledger
    big = 2**70 + 5
    await ledger.record(
        [
            credit("a1", amount=10),
            credit("a2", amount=big, epoch=2),
            credit("b1", user="bob", amount=2**63 - 1),
            credit("b2", user="bob", amount=1, epoch=2),  # crosses 2**63 in epoch 2
            credit("c3", user="carol", amount=MAX_AMOUNT - 7, epoch=3),
        ]
    )
    await ledger.link_account("bob", WALLET)
    for epoch in (0, 1, 2, 3):
        cumulative = await ledger.journal.cumulative(epoch)
        leaves = await ledger.journal.leaves(epoch, lambda *_: None)
        assert sorted(leaves) == sorted(leaf_data(a, v) for a, v in cumulative.items())
    assert sorted((await ledger.journal.cumulative(2)).values()) == [2**63, 10 + big]
    # Beyond uint256 no leaf can carry it: a clear error, not a truncated amount.
    await ledger.record([credit("c4", user="carol", amount=8, epoch=4)])
    with pytest.raises(InvalidMerkleInput):
        await ledger.journal.leaves(4, lambda *_: None)


async def test_settle_and_verify_report_progress(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit(f"k{i}", user=f"u{i}", amount=i + 1) for i in range(9)])
    seen: list[tuple[str, int, int | None]] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        seen.append((phase, done, total))

    await ledger.settle(1, progress=progress)
    phases = [phase for phase, _, _ in seen]
    assert [p for p in dict.fromkeys(phases) if p.startswith("settle ")] == [
        f"settle {step}" for step in SETTLE_STEPS
    ]
    assert ("settle confirmed", len(SETTLE_STEPS), len(SETTLE_STEPS)) in seen
    assert ("read", 9, 9) in seen
    tree = [(done, total) for phase, done, total in seen if phase == "tree"]
    assert tree[-1] == (17, 17)  # 9 leaves and 8 nodes
    assert [done for done, _ in tree] == sorted(done for done, _ in tree)
    seen.clear()
    assert (await ledger.verify(progress=progress)).ok
    assert seen[0] == ("verify", 0, 1)
    assert seen[-1] == ("verify", 1, 1)
    assert ("tree", 17, 17) in seen


async def test_references_come_from_each_anchor(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1"), credit("b1", user="bob", amount=2)])
    settled = await ledger.settle(1)
    assert settled.anchor_ref == await ledger.anchor.ref(1)
    assert await ledger.anchor.ref(2) is None
    # A second ledger anchored elsewhere on the same journal, as `grass ledger migrate` opens.
    other = AnchoredLedger(ledger.journal, MemoryAnchor())
    assert (await other.settlement(1)).anchor_ref is None
    assert not (await other.verify()).ok
    moved = await other.settle(1)  # a confirmed epoch: re-anchored, the record kept
    assert moved.anchor_ref is not None
    assert moved.anchor_ref.startswith("memory:")
    assert (await other.settlement(1)).anchor_ref == moved.anchor_ref
    assert (await ledger.settlement(1)).anchor_ref == settled.anchor_ref
    assert (await ledger.journal.settlement(1)) == settled
    assert (await other.verify()).ok
    assert (await ledger.verify()).ok
