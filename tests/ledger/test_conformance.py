"""What every ledger backend must do (backends: tests/ledger/conftest.py)."""

from __future__ import annotations

import random

import attrs
import pytest
import trio

from grass.errors import Conflict, NotFound
from grass.ledger.abc import (
    SETTLE_STEPS,
    AccountConflict,
    AlreadySettled,
    ClaimsAnchor,
    Credit,
    CreditConflict,
    EpochNotFound,
    InvalidCredit,
    NoBalance,
    SettlementStatus,
    VerificationFailed,
    derived_account,
)
from grass.ledger.keccak import keccak256
from grass.ledger.merkle import (
    MerkleTree,
    verify,
)

WALLET = bytes.fromhex("11" * 20)


def credit(key: str, user: str = "alice", amount: int = 100, epoch: int = 1, **kw) -> Credit:
    return Credit(key=key, user_id=user, amount=amount, epoch=epoch, **kw)


async def test_same_key_same_content_is_a_duplicate(harness, autojump_clock):
    ledger = harness.ledger
    first = await ledger.record([credit("k1"), credit("k2", amount=5)])
    assert (first.new, first.duplicates) == (2, 0)
    again = await ledger.record([credit("k1"), credit("k3", amount=7)])
    assert (again.new, again.duplicates) == (1, 1)
    assert (await ledger.balance("alice")).total == 112


async def test_same_key_other_content_conflicts_and_rejects_the_batch(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("k1")])
    with pytest.raises(CreditConflict) as info:
        await ledger.record([credit("new"), credit("k1", amount=101)])
    assert isinstance(info.value, Conflict)
    assert info.value.details == {"key": "k1"}
    # Nothing of the refused batch was written, not even the credit before the conflict.
    assert (await ledger.balance("alice")).total == 100
    assert (await ledger.record([credit("new")])).new == 1
    # A conflict inside one batch is a conflict too.
    with pytest.raises(CreditConflict):
        await ledger.record([credit("x"), credit("x", user="bob")])
    assert (await ledger.balance("bob")).total == 0


@pytest.mark.parametrize("bad", [0, -5, True, 1.5])
async def test_malformed_amount_is_refused(bad):
    with pytest.raises(InvalidCredit):
        credit("k", amount=bad)


async def test_balances_pending_until_settled(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1", amount=10), credit("b1", user="bob", amount=3)])
    await ledger.record([credit("a2", amount=4, epoch=2)])
    assert await ledger.balances(["alice", "bob", "carol"]) == {
        "alice": await ledger.balance("alice"),
        "bob": await ledger.balance("bob"),
        "carol": await ledger.balance("carol"),
    }
    alice = await ledger.balance("alice")
    assert (alice.settled, alice.pending) == (0, 14)
    settlement = await ledger.settle(1)
    assert settlement.status is SettlementStatus.CONFIRMED
    assert (settlement.total, settlement.user_count) == (13, 2)
    alice = await ledger.balance("alice")
    assert (alice.settled, alice.pending) == (10, 4)
    bob = await ledger.balance("bob")
    assert (bob.settled, bob.pending) == (3, 0)
    carol = await ledger.balance("carol")
    assert (carol.settled, carol.pending) == (0, 0)


async def test_credit_for_a_settled_epoch_is_refused(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1")])
    await ledger.settle(1)
    with pytest.raises(AlreadySettled):
        await ledger.record([credit("late", epoch=1)])
    # A retry of an already recorded credit is still just a duplicate.
    assert (await ledger.record([credit("a1")])).duplicates == 1
    assert (await ledger.record([credit("a2", epoch=2)])).new == 1


async def test_history_pages_newest_first(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit(f"k{i}", amount=i + 1) for i in range(7)])
    await ledger.record([credit("other", user="bob")])
    seen = []
    cursor = None
    pages = 0
    while True:
        page = await ledger.history("alice", cursor, limit=3)
        seen.extend(c.key for c in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"k{i}" for i in reversed(range(7))]
    assert pages == 3
    assert (await ledger.history("nobody")).items == ()
    with pytest.raises(InvalidCredit):
        await ledger.history("alice", "not-a-cursor")


async def test_settle_then_proof_verifies(harness, autojump_clock):
    ledger = harness.ledger
    users = [f"u{i}" for i in range(13)]
    await ledger.record([credit(f"k{u}", user=u, amount=i + 1) for i, u in enumerate(users)])
    await ledger.link_account("u3", WALLET)
    settlement = await ledger.settle(1)
    assert settlement.anchor_ref
    assert await ledger.settlement(1) == settlement
    assert await ledger.settlements() == [settlement]
    for i, user in enumerate(users):
        proof = await ledger.proof(user, 1)
        assert proof.cumulative_amount == i + 1
        assert proof.root == settlement.root
        expected = WALLET if user == "u3" else derived_account(user)
        assert proof.account == expected
        assert verify(settlement.root, proof.account, proof.cumulative_amount, proof.proof)
        assert not verify(settlement.root, proof.account, proof.cumulative_amount + 1, proof.proof)
    with pytest.raises(NoBalance) as info:
        await ledger.proof("stranger", 1)
    assert isinstance(info.value, NotFound)
    with pytest.raises(EpochNotFound):
        await ledger.proof("u1", 2)


async def test_derived_account_is_documented_hash():
    assert derived_account("alice") == keccak256(b"grass:user:alice")[:20]


async def test_cumulative_amounts_across_two_epochs(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1", amount=10), credit("b1", user="bob", amount=1)])
    first = await ledger.settle(1)
    await ledger.record([credit("a2", amount=5, epoch=2), credit("c2", user="carol", epoch=2)])
    second = await ledger.settle(2)
    assert first.root != second.root
    assert (second.total, second.user_count) == (116, 3)
    proof = await ledger.proof("alice", 2)
    assert proof.cumulative_amount == 15
    assert verify(second.root, proof.account, 15, proof.proof)
    assert (await ledger.proof("alice", 1)).cumulative_amount == 10
    assert (await ledger.proof("bob", 2)).cumulative_amount == 1
    expected = MerkleTree.build(
        {derived_account(u): a for u, a in [("alice", 15), ("bob", 1), ("carol", 100)]}
    )
    assert second.root == expected.root


async def test_settle_is_idempotent_and_ordered(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1"), credit("a3", epoch=3)])
    assert await ledger.latest_settlement() is None
    settled = await ledger.settle(3)
    assert await ledger.latest_settlement() == 3
    assert await ledger.settle(3) == settled
    assert await harness.anchor_writes(3) == 1
    with pytest.raises(AlreadySettled):
        await ledger.settle(2)


async def test_linked_wallet_is_final_and_unique(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.link_account("alice", WALLET)
    await ledger.link_account("alice", "0x" + "11" * 20)  # the same wallet again: fine
    with pytest.raises(AccountConflict):
        await ledger.link_account("alice", bytes(19) + b"\x02")
    with pytest.raises(AccountConflict):
        await ledger.link_account("bob", WALLET)


async def test_verify_passes_then_detects_a_tampered_anchor(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1"), credit("b1", user="bob", amount=9)])
    await ledger.settle(1)
    await ledger.record([credit("a2", epoch=2)])
    second = await ledger.settle(2)
    report = await ledger.verify()
    assert report.ok
    assert [e.epoch for e in report.epochs] == [1, 2]
    report.raise_for_mismatch()

    forged = keccak256(b"forged")
    await harness.tamper(2, forged)
    report = await ledger.verify()
    assert not report.ok
    bad = report.epochs[1]
    assert (bad.ok, bad.anchored_root, bad.expected_root) == (False, forged, second.root)
    assert report.epochs[0].ok
    with pytest.raises(VerificationFailed) as info:
        report.raise_for_mismatch()
    assert info.value.details == {"epochs": [2]}


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", SETTLE_STEPS)
async def test_crash_at_any_step_then_rerun_anchors_once(ledger_factory, step, autojump_clock):
    crashed = []

    async def hook(name: str) -> None:
        if name == step and not crashed:
            crashed.append(name)
            raise Crash(name)

    async with ledger_factory(hook) as h:
        ledger = h.ledger
        await ledger.record([credit("a1"), credit("b1", user="bob", amount=2)])
        await ledger.record([credit("a2", epoch=2, amount=3)])
        with pytest.raises(Crash):
            await ledger.settle(1)
        assert crashed == [step]
        if step != "confirmed":
            assert not (await ledger.verify()).ok or step in ("close", "tree")
        first = await ledger.settle(1)
        assert first.status is SettlementStatus.CONFIRMED
        second = await ledger.settle(2)
        assert await ledger.settle(1) == first
        for epoch in (1, 2):
            assert await h.anchor_writes(epoch) == 1
        report = await ledger.verify()
        assert report.ok, report
        assert [e.anchored_root for e in report.epochs] == [first.root, second.root]


async def test_hundred_concurrent_records_with_overlapping_keys(harness, autojump_clock):
    ledger = harness.ledger
    rng = random.Random(3)
    # 100 calls draw keys from a pool of 150: many keys arrive in several calls at once.
    pool = [credit(f"k{i}", user=f"u{i % 7}", amount=i + 1) for i in range(150)]
    batches = [rng.sample(pool, 20) for _ in range(100)]
    results = []

    async def one(batch):
        results.append(await ledger.record(batch))

    async with trio.open_nursery() as nursery:
        for batch in batches:
            nursery.start_soon(one, batch)
    distinct = {c.key: c for batch in batches for c in batch}
    assert sum(r.new for r in results) == len(distinct)
    assert sum(r.new + r.duplicates for r in results) == 2000
    balances = await ledger.balances([f"u{i}" for i in range(7)])
    for i in range(7):
        want = sum(c.amount for c in distinct.values() if c.user_id == f"u{i}")
        assert balances[f"u{i}"].total == want


async def test_anchor_survives_reopen_when_persistent(ledger_factory, autojump_clock):
    async with ledger_factory() as h:
        await h.ledger.record([credit("a1")])
        settled = await h.ledger.settle(1)
        persistent = "persistent" in h.ledger.capabilities
    async with ledger_factory() as h:
        anchored = await h.ledger.anchor.anchored(1)
        assert anchored == (settled.root if persistent else None)


async def test_a_proof_is_claimed_once_on_the_contract(harness, autojump_clock):
    ledger = harness.ledger
    await ledger.record([credit("a1", amount=40), credit("b1", user="bob", amount=2)])
    await ledger.link_account("alice", WALLET)
    await ledger.settle(1)
    proof = await ledger.proof("alice", 1)
    assert proof.account == WALLET
    if "claims" not in ledger.capabilities:
        # Only chains pay out: there is no claim to send, and the ledger says it cannot tell
        # what was claimed rather than answering 0.
        assert harness.claim is None
        assert not isinstance(ledger.anchor, ClaimsAnchor)
        assert await ledger.claimed(WALLET) is None
        return
    assert await ledger.claimed(WALLET) == 0
    assert await harness.claim(proof) is None
    assert await ledger.claimed(WALLET) == 40
    assert await harness.claim(proof) == "NothingToClaim"
    forged = attrs.evolve(proof, cumulative_amount=proof.cumulative_amount + 1)
    assert await harness.claim(forged) == "InvalidProof"
    # The next epoch's cumulative proof pays the difference only, and once.
    await ledger.record([credit("a2", amount=5, epoch=2)])
    await ledger.settle(2)
    later = await ledger.proof("alice", 2)
    assert later.cumulative_amount == 45
    assert await harness.claim(later) is None
    assert await harness.claim(later) == "NothingToClaim"
    assert await ledger.claimed(WALLET) == 45


async def test_export_gives_every_credit_in_order_and_the_links(harness, autojump_clock):
    journal = harness.ledger.journal
    credits = [credit(f"k{i}", user=f"u{i % 4}", amount=i + 1, epoch=1 + i % 2) for i in range(11)]
    await harness.ledger.record(credits[:6])
    await harness.ledger.record([credits[0], *credits[6:]])  # a duplicate is exported once
    await harness.ledger.link_account("u1", WALLET)
    await harness.ledger.settle(1)
    await harness.ledger.link_account("u2", bytes.fromhex("22" * 20))
    seen, cursor = [], 0
    while True:
        page, cursor = await journal.export(cursor, 4)
        if not page:
            break
        assert len(page) <= 4
        seen.extend(page)
    assert seen == credits
    assert (await journal.export(cursor, 4)) == ([], cursor)
    links = sorted(await journal.links(), key=lambda link: link.user_id)
    assert [(k.user_id, k.account, k.first_epoch) for k in links] == [
        ("u1", WALLET, 0),
        ("u2", bytes.fromhex("22" * 20), 2),
    ]
