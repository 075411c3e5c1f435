"""The simulated chain: contract rules, blocks and confirmations, faults, persistence."""

from __future__ import annotations

import json

import pytest
import trio

from grass.ledger.abc import AnchorFailed, Credit, SettlementStatus
from grass.ledger.keccak import keccak256
from grass.ledger.merkle import MerkleTree
from grass.ledger.mockchain import OWNER, MockChain, MockchainAnchor, open_mockchain_ledger

ROOT1 = keccak256(b"one")
ROOT2 = keccak256(b"two")
ALICE = bytes.fromhex("aa" * 20)
BOB = bytes.fromhex("bb" * 20)


def credits(epoch: int, **amounts: int) -> list[Credit]:
    return [
        Credit(key=f"{u}-{epoch}", user_id=u, amount=a, epoch=epoch) for u, a in amounts.items()
    ]


def mined(chain: MockChain, tx: str) -> tuple[bool, str | None]:
    receipt = chain.receipt(tx)
    assert receipt is not None
    return receipt.ok, receipt.error


async def test_set_root_rules():
    chain = MockChain()
    txs = [
        chain.set_root(1, bytes(32)),
        chain.set_root(3, ROOT1),
        chain.set_root(3, ROOT2),
        chain.set_root(2, ROOT2),
        chain.set_root(5, ROOT2, sender="0x" + "99" * 20),
        chain.set_root(7, ROOT2),
    ]
    chain.mine()
    assert [mined(chain, t) for t in txs] == [
        (False, "ZeroRoot"),
        (True, None),
        (False, "EpochNotIncreasing"),
        (False, "EpochNotIncreasing"),
        (False, "NotOwner"),
        (True, None),
    ]
    assert (chain.roots(3), chain.roots(5), chain.roots(7)) == (ROOT1, None, ROOT2)
    assert chain.state.next_epoch == 8


async def test_claims_pay_cumulative_minus_claimed():
    chain = MockChain()
    no_root = chain.claim(ALICE, 1, [], sender=OWNER)
    chain.mine()
    assert mined(chain, no_root) == (False, "NoRoot")

    first = MerkleTree.build({ALICE: 10, BOB: 4})
    chain.set_root(1, first.root)
    chain.mine()
    ok = chain.claim(ALICE, 10, first.proof(ALICE), sender=OWNER)
    again = chain.claim(ALICE, 10, first.proof(ALICE), sender=OWNER)
    lie = chain.claim(BOB, 5, first.proof(BOB), sender=OWNER)
    chain.mine()
    assert [mined(chain, t) for t in (ok, again, lie)] == [
        (True, None),
        (False, "NothingToClaim"),
        (False, "InvalidProof"),
    ]
    second = MerkleTree.build({ALICE: 25, BOB: 4})
    chain.set_root(2, second.root)
    chain.mine()
    # Only the latest root counts: epoch 1's proof no longer verifies.
    stale = chain.claim(BOB, 4, first.proof(BOB), sender=OWNER)
    more = chain.claim(ALICE, 25, second.proof(ALICE), sender=OWNER)
    chain.mine()
    assert mined(chain, stale) == (False, "InvalidProof")
    assert mined(chain, more) == (True, None)
    assert (chain.claimed(ALICE), chain.claimed(BOB), chain.state.total_claimed) == (25, 0, 25)


async def test_blocks_on_block_time_and_confirmations(autojump_clock):
    chain = MockChain(block_time=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(chain.run)
        start = trio.current_time()
        tx = chain.set_root(1, ROOT1)
        assert chain.confirmations(tx) == 0
        await chain.wait_change()
        assert trio.current_time() - start == pytest.approx(5.0)
        assert chain.confirmations(tx) == 1
        await chain.wait_change()
        await chain.wait_change()
        assert (chain.head, chain.confirmations(tx)) == (3, 3)
        nursery.cancel_scope.cancel()


async def settle_on_chain(path, epoch_credits, *, confirmations=3, before=None):
    async with open_mockchain_ledger(path, block_time=2.0, confirmations=confirmations) as ledger:
        anchor = ledger.anchor
        assert isinstance(anchor, MockchainAnchor)
        if before is not None:
            before(anchor.chain)
        await ledger.record(epoch_credits)
        start = trio.current_time()
        settlement = await ledger.settle(1)
        return ledger, anchor, settlement, trio.current_time() - start


async def test_settlement_waits_for_n_confirmations(autojump_clock):
    _, anchor, settlement, took = await settle_on_chain(None, credits(1, a=1), confirmations=3)
    assert settlement.status is SettlementStatus.CONFIRMED
    assert anchor.chain.confirmations(settlement.anchor_ref) == 3
    assert took == pytest.approx(6.0)  # three blocks of 2 s


async def test_dropped_root_is_resent_after_timeout(autojump_clock):
    _, anchor, settlement, took = await settle_on_chain(
        None, credits(1, a=5), before=lambda chain: chain.drop_next()
    )
    chain = anchor.chain
    assert anchor.sends == {1: 2}
    assert chain.roots(1) == settlement.root
    setroots = [r for b in chain.blocks() for r in b if r.tx.fn == "setRoot"]
    assert [r.tx.hash for r in setroots] == [settlement.anchor_ref]
    assert took >= anchor.timeout


async def test_reverted_root_fails_then_retry_anchors(autojump_clock):
    async with open_mockchain_ledger(None, block_time=2.0) as ledger:
        chain = ledger.anchor.chain
        await ledger.record(credits(1, a=5, b=6))
        chain.revert_next()
        with pytest.raises(AnchorFailed) as info:
            await ledger.settle(1)
        assert info.value.details["error"] == "InjectedRevert"
        assert (await ledger.settlement(1)).status is SettlementStatus.FAILED
        assert chain.roots(1) is None
        settlement = await ledger.settle(1)
        assert settlement.status is SettlementStatus.CONFIRMED
        assert chain.roots(1) == settlement.root
        assert (await ledger.verify()).ok


@pytest.mark.parametrize("requeue", [True, False])
@pytest.mark.parametrize("depth", [1, 2])
async def test_reorg_during_confirmation_keeps_one_root(autojump_clock, depth, requeue):
    # A timeout shorter than a block: only the mempool check keeps a requeued root from
    # being sent a second time.
    async with open_mockchain_ledger(
        None, block_time=2.0, confirmations=3, resend_after=0.5
    ) as ledger:
        anchor = ledger.anchor
        chain = anchor.chain
        await ledger.record(credits(1, a=5))
        reorged = []

        async def reorg_once_mined():
            while chain.roots(1) is None or chain.confirmations(chain.root_tx(1)) < depth:
                await chain.wait_change()
            reorged.extend(chain.reorg(depth, requeue=requeue))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reorg_once_mined)
            settlement = await ledger.settle(1)
        assert [tx.fn for tx in reorged] == ["setRoot"]
        # Back in the mempool it is mined again (same hash); lost, it is sent once more.
        assert anchor.sends == {1: 1 if requeue else 2}
        assert (settlement.anchor_ref == reorged[0].hash) is requeue
        landed = [r for b in chain.blocks() for r in b if r.tx.fn == "setRoot"]
        assert [r.ok for r in landed] == [True]
        assert chain.confirmations(settlement.anchor_ref) >= 3
        assert (await ledger.verify()).ok


async def test_reorg_rejects_bad_depth():
    chain = MockChain()
    chain.mine()
    with pytest.raises(ValueError, match="depth"):
        chain.reorg(2)


async def test_state_survives_restart(tmp_path, autojump_clock):
    path = tmp_path / "chain.jsonl"
    tree = MerkleTree.build({ALICE: 7})
    chain = MockChain(path)
    chain.set_root(1, tree.root)
    chain.mine()
    chain.claim(ALICE, 7, tree.proof(ALICE), sender=OWNER)
    chain.mine()
    chain.set_root(2, ROOT2)  # still in the mempool at "shutdown"
    before = chain.state_digest()

    reopened = MockChain(path)
    assert reopened.state_digest() == before
    assert (reopened.claimed(ALICE), reopened.head) == (7, 2)
    # A new transaction after the restart must not reuse an old hash.
    fresh = reopened.set_root(3, ROOT1)
    assert fresh not in {tx["hash"] for tx in before["mempool"]}
    reopened.mine()
    assert (reopened.roots(2), reopened.roots(3)) == (ROOT2, ROOT1)
    assert not list(tmp_path.glob("*.tmp"))


async def test_restarted_anchor_waits_for_its_pending_root(tmp_path, autojump_clock):
    path = tmp_path / "chain.jsonl"
    MockChain(path).set_root(1, ROOT1)  # sent, then the process died before a block
    chain = MockChain(path, block_time=1.0)
    anchor = MockchainAnchor(chain, confirmations=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(chain.run)
        ref = await anchor.post(1, ROOT1)
        nursery.cancel_scope.cancel()
    assert anchor.sends == {}
    assert [r.tx.hash for b in chain.blocks() for r in b] == [ref]


async def test_other_root_on_chain_is_refused(autojump_clock):
    chain = MockChain(block_time=1.0)
    anchor = MockchainAnchor(chain, confirmations=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(chain.run)
        await anchor.post(1, ROOT1)
        with pytest.raises(AnchorFailed, match="another root"):
            await anchor.post(1, ROOT2)
        with pytest.raises(AnchorFailed, match="later epoch"):
            await anchor.post(0, ROOT2)
        nursery.cancel_scope.cancel()


async def test_persistence_is_an_append_only_log(tmp_path, autojump_clock):
    path = tmp_path / "chain.jsonl"
    chain = MockChain(path)
    tree = MerkleTree.build({ALICE: 7})
    chain.set_root(1, tree.root)
    chain.mine()
    written = path.read_bytes()
    sizes = [len(written)]
    # Faults and a reorg are changes like any other: each one only appends.
    chain.drop_next()
    chain.set_root(2, ROOT2)
    chain.revert_next()
    chain.set_root(2, ROOT1)
    chain.mine()
    chain.set_root(3, ROOT2)
    chain.mine()
    chain.reorg(1)
    chain.mine()
    now = path.read_bytes()
    assert now.startswith(written)
    written = now
    sizes.append(len(now))
    for _ in range(50):
        chain.mine()
        now = path.read_bytes()
        assert now.startswith(written)
        # One block is one short line, whatever the length of the history before it.
        assert len(now) - len(written) < 100
        written = now
        sizes.append(len(now))
    assert sizes == sorted(sizes)
    before = chain.state_digest()
    reopened = MockChain(path)
    assert reopened.state_digest() == before
    assert (reopened.roots(1), reopened.roots(2), reopened.roots(3)) == (tree.root, None, ROOT2)
    # The replayed chain keeps appending where the old one stopped.
    reopened.mine()
    assert MockChain(path).state_digest() == reopened.state_digest()


async def test_a_torn_last_line_is_a_change_that_never_happened(tmp_path, autojump_clock):
    path = tmp_path / "chain.jsonl"
    chain = MockChain(path)
    chain.set_root(1, ROOT1)
    chain.mine()
    before = chain.state_digest()
    intact = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"op":"mine","count":0,"rev')  # the process died mid-write
    reopened = MockChain(path)
    assert reopened.state_digest() == before
    assert path.read_bytes() == intact  # the torn tail is cut, later lines start clean
    reopened.set_root(2, ROOT2)
    reopened.mine()
    assert MockChain(path).roots(2) == ROOT2


async def test_a_chain_kept_in_the_former_snapshot_file_is_carried_over(tmp_path, autojump_clock):
    tree = MerkleTree.build({ALICE: 7})
    chain = MockChain(tmp_path / "now" / "chain.jsonl")
    chain.set_root(1, tree.root)
    chain.mine()
    chain.claim(ALICE, 7, tree.proof(ALICE), sender=OWNER)
    chain.mine()
    chain.set_root(2, ROOT2)
    # What the former code wrote: one JSON document, chain.json, beside where the log goes.
    old = tmp_path / "then" / "chain.json"
    old.parent.mkdir()
    old.write_text(json.dumps(chain._snapshot(), separators=(",", ":")))
    carried = MockChain(tmp_path / "then" / "chain.jsonl")
    assert carried.state_digest() == chain.state_digest()
    assert MockChain(tmp_path / "then" / "chain.jsonl").state_digest() == chain.state_digest()
    assert old.exists()


async def test_a_log_line_that_is_not_a_change_is_refused_not_cut(tmp_path, autojump_clock):
    path = tmp_path / "chain.jsonl"
    MockChain(path).set_root(1, ROOT1)
    with path.open("ab") as f:
        f.write(b'{"owner": "someone else"}\n')
    kept = path.read_bytes()
    with pytest.raises(ValueError, match="line 3 is not a change"):
        MockChain(path)
    assert path.read_bytes() == kept
