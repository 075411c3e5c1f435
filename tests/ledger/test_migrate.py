"""Migration memory -> postgres -> mockchain -> web3, verify passing at every step."""

from __future__ import annotations

import attrs
import pytest
import trio
from trio.testing import MockClock

from grass.ledger.abc import (
    AlreadySettled,
    AnchorFailed,
    Credit,
    NoBalance,
    SettlementStatus,
    VerificationFailed,
)
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.keccak import keccak256
from grass.ledger.memory import MemoryAnchor, MemoryJournal, open_memory_ledger
from grass.ledger.merkle import verify
from grass.ledger.migrate import migrate_ledger
from grass.ledger.mockchain import open_mockchain_ledger
from grass.ledger.postgres import PostgresAnchor, PostgresJournal
from grass.ledger.postgres_schema import migrate_ledger_tables
from grass.ledger.web3 import open_web3_ledger
from tests.ledger.conftest import _deployment
from tests.ledger.evm import eth_tester_node
from tests.storage.postgres.conftest import open_test_database, temporary_schema

USERS = [f"user-{i}" for i in range(40)]


@pytest.fixture
def autojump_clock() -> MockClock:
    return MockClock(rate=1.0)  # PostgreSQL and a node in worker threads: real time


@pytest.fixture
def schema(postgres_dsn: str):
    with temporary_schema(postgres_dsn, prefix="migrate") as name:
        yield name


async def _fill(ledger: AnchoredLedger) -> None:
    for epoch in (1, 2, 3, 4):
        await ledger.record(
            [
                Credit(key=f"{epoch}:{u}", user_id=u, amount=(i + 1) * epoch, epoch=epoch)
                for i, u in enumerate(USERS)
                if (i + epoch) % 3
            ]
        )
        if epoch == 2:
            await ledger.link_account("user-1", bytes.fromhex("a1" * 20))
        if epoch < 4:  # epoch 4 stays pending
            await ledger.settle(epoch)
    await ledger.link_account("user-2", bytes.fromhex("a2" * 20))  # applies from epoch 4


async def _same_books(a: AnchoredLedger, b: AnchoredLedger) -> None:
    assert await a.balances(USERS) == await b.balances(USERS)
    for epoch in (1, 2, 3):
        for user in ("user-1", "user-2", "user-5"):
            try:
                expected = await a.proof(user, epoch)
            except NoBalance:
                with pytest.raises(NoBalance):
                    await b.proof(user, epoch)
                continue
            assert await b.proof(user, epoch) == expected


async def test_memory_to_postgres_to_mockchain_to_web3(postgres_dsn, schema, autojump_clock):
    deployment = _deployment(eth_tester_node())
    seen: list[tuple[str, int, int | None]] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        seen.append((phase, done, total))

    async with (
        open_memory_ledger() as memory,
        open_test_database(postgres_dsn, schema, max_size=6) as db,
    ):
        await migrate_ledger_tables(db)
        await _fill(memory)
        assert (await memory.verify()).ok
        roots = [s.root for s in await memory.settlements()]

        # memory -> postgres: two journals, so the credits and links move and epochs re-settle.
        journal = PostgresJournal(db)
        postgres = AnchoredLedger(journal, PostgresAnchor(db))
        report = await migrate_ledger(memory, postgres, progress=progress, batch=7)
        assert not report.shared_journal
        recorded = sum(1 for e in (1, 2, 3, 4) for i in range(40) if (i + e) % 3)
        assert (report.credits_copied, report.credits_already_there) == (recorded, 0)
        assert report.links_copied == 2
        assert [(m.epoch, m.action) for m in report.epochs] == [
            (1, "settled"),
            (2, "settled"),
            (3, "settled"),
        ]
        assert [m.root for m in report.epochs] == roots
        assert report.verify.ok
        assert ("epochs", 3, 3) in seen
        assert ("credits", recorded, None) in seen
        await _same_books(memory, postgres)
        # A second run moves nothing new and still verifies.
        again = await migrate_ledger(memory, postgres, batch=50)
        assert (again.credits_copied, again.credits_already_there) == (0, recorded)
        assert again.verify.ok

        # postgres -> mockchain on the same journal: the roots are posted on the chain.
        async with open_mockchain_ledger(
            None, block_time=0.05, confirmations=2, journal=journal
        ) as mockchain:
            before = await postgres.settlements()
            report = await migrate_ledger(postgres, mockchain)
            assert report.shared_journal
            assert report.credits_copied == 0
            assert [m.action for m in report.epochs] == ["re-anchored"] * 3
            assert all(m.target_ref and m.target_ref.startswith("0x") for m in report.epochs)
            assert [m.source_ref for m in report.epochs] == [s.anchor_ref for s in before]
            assert report.verify.ok
            assert [await mockchain.anchor.anchored(e) for e in (1, 2, 3)] == roots
            assert (await postgres.verify()).ok  # the old anchor still agrees with the journal
            # Each backend shows its own references; the shared records are untouched.
            assert await postgres.settlements() == before
            assert all(s.anchor_ref.startswith("postgres:") for s in before)
            assert [s.anchor_ref for s in await mockchain.settlements()] == [
                m.target_ref for m in report.epochs
            ]
            again = await migrate_ledger(postgres, mockchain)
            assert [m.action for m in again.epochs] == ["already there"] * 3
            assert [m.target_ref for m in again.epochs] == [m.target_ref for m in report.epochs]
            await _same_books(memory, mockchain)

            # mockchain -> web3 (eth-tester): the contract takes the roots; claims work.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(deployment.node.mine_forever)
                async with open_web3_ledger(
                    deployment.node.client(deployment.address),
                    deployment.signer,
                    journal=journal,
                    poll_interval=0.02,
                ) as web3:
                    report = await migrate_ledger(mockchain, web3)
                    assert [m.action for m in report.epochs] == ["re-anchored"] * 3
                    assert report.verify.ok
                    assert [await web3.anchor.anchored(e) for e in (1, 2, 3)] == roots
                    settled = await web3.settlements()
                    assert [s.status for s in settled] == [SettlementStatus.CONFIRMED] * 3
                    assert [s.anchor_ref for s in settled] == [m.target_ref for m in report.epochs]
                    proof = await web3.proof("user-1", 3)
                    assert proof.account == bytes.fromhex("a1" * 20)
                    assert verify(roots[2], proof.account, proof.cumulative_amount, proof.proof)
                    # Epoch 4 settles on the new backend only, with user-2's wallet.
                    fourth = await web3.settle(4)
                    assert (await web3.proof("user-2", 4)).account == bytes.fromhex("a2" * 20)
                    assert (await web3.verify()).ok
                    # ...and the same root as the source ledger would have anchored.
                    mem4 = await memory.settle(4)
                    assert (mem4.root, mem4.total, mem4.user_count) == (
                        fourth.root,
                        fourth.total,
                        fourth.user_count,
                    )
                nursery.cancel_scope.cancel()


async def test_a_record_that_disagrees_with_the_journal_stops_the_migration():
    source = AnchoredLedger(MemoryJournal(), MemoryAnchor())
    await _fill(source)
    # The shared record of epoch 2 now claims a root its credits do not give.
    forged = keccak256(b"forged")
    second = await source.journal.settlement(2)
    await source.journal.put_settlement(attrs.evolve(second, root=forged))
    target = AnchoredLedger(source.journal, MemoryAnchor())
    with pytest.raises(VerificationFailed) as info:
        await migrate_ledger(source, target)
    details = info.value.details
    assert (details["epoch"], details["moved"]) == (2, [1])
    assert details["roots"]["recorded on the source"] == "0x" + forged.hex()
    assert details["roots"]["recomputed from the source's journal"] != "0x" + forged.hex()
    # Epoch 1 moved; the forged root was never posted, and nothing after it moved.
    assert await target.anchor.anchored(1) == (await source.journal.settlement(1)).root
    assert await target.anchor.anchored(2) is None
    assert await target.anchor.anchored(3) is None


@pytest.mark.parametrize("damage", ["changed", "lost"])
async def test_a_source_anchor_that_disagrees_stops_the_migration(damage):
    source = AnchoredLedger(MemoryJournal(), MemoryAnchor())
    await _fill(source)
    # The source's anchor no longer holds what the journal says it settled for epoch 2.
    anchor = source.anchor
    assert isinstance(anchor, MemoryAnchor)
    if damage == "lost":
        del anchor._roots[2]
    else:
        anchor._roots[2] = attrs.evolve(anchor._roots[2], root=keccak256(b"other"))
    assert not (await source.verify()).ok
    target = AnchoredLedger(source.journal, MemoryAnchor())
    with pytest.raises(VerificationFailed) as info:
        await migrate_ledger(source, target)
    details = info.value.details
    assert (details["epoch"], details["moved"]) == (2, [1])
    held = details["roots"]["held by the source's anchor"]
    assert held != details["roots"]["recorded on the source"]
    assert await target.anchor.anchored(2) is None


class FailsOnce(MemoryAnchor):
    """Refuses the first post of one epoch, as a chain that reverted it."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.failing = epoch

    async def post(self, epoch: int, root: bytes) -> str:
        if epoch == self.failing:
            self.failing = -1
            raise AnchorFailed("reverted", details={"epoch": epoch})
        return await super().post(epoch, root)


async def test_journals_apart_keep_what_the_source_closed_and_when_links_began():
    source = AnchoredLedger(MemoryJournal(), FailsOnce(2))
    alice, wallet = "alice", bytes.fromhex("a1" * 20)
    await source.record([Credit(key="1", user_id=alice, amount=1, epoch=1)])
    await source.settle(1)
    await source.record([Credit(key="2", user_id=alice, amount=2, epoch=2)])
    with pytest.raises(AnchorFailed):
        await source.settle(2)  # closed, and failed: skipped by the migration
    await source.link_account(alice, wallet)  # from epoch 3 on the source
    await source.record([Credit(key="3", user_id=alice, amount=3, epoch=3)])
    await source.settle(3)
    target = AnchoredLedger(MemoryJournal(), MemoryAnchor())
    report = await migrate_ledger(source, target)
    assert [m.epoch for m in report.epochs] == [1, 3]
    assert report.verify.ok
    for epoch in (1, 2, 3):
        assert await target.journal.account_of(alice, epoch) == (
            await source.journal.account_of(alice, epoch)
        )
    # Epoch 2 takes no credits on the target, as on the source.
    for ledger in (source, target):
        with pytest.raises(AlreadySettled):
            await ledger.record([Credit(key="late", user_id=alice, amount=1, epoch=2)])


async def test_a_target_record_that_disagrees_is_never_posted():
    source = AnchoredLedger(MemoryJournal(), MemoryAnchor())
    await _fill(source)
    target = AnchoredLedger(MemoryJournal(), MemoryAnchor())
    first = await source.journal.settlement(1)
    await target.journal.put_settlement(
        attrs.evolve(first, root=keccak256(b"forged"), status=SettlementStatus.PENDING)
    )
    with pytest.raises(VerificationFailed) as info:
        await migrate_ledger(source, target)
    assert info.value.details["epoch"] == 1
    assert "recorded on the target" in info.value.details["roots"]
    assert await target.anchor.anchored(1) is None
