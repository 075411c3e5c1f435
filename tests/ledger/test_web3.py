"""What only the web3 anchor does: restarts through the outbox, reverts, reorgs, keys.

The conformance suite (test_conformance.py) already runs the web3 ledger on eth-tester and
anvil; these tests reach inside the writer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import pytest
import trio
from eth_account import Account
from trio.testing import MockClock
from web3 import Web3

from grass import backends
from grass.config import load_config
from grass.errors import ConfigError, StartupError
from grass.ledger.abc import (
    AnchorFailed,
    AnchorUnreachable,
    Credit,
    Journal,
    SettlementStatus,
    StepHook,
)
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.keccak import keccak256
from grass.ledger.memory import MemoryJournal
from grass.ledger.postgres import PostgresJournal
from grass.ledger.postgres_schema import OWNER, ledger_migrations, migrate_ledger_tables
from grass.ledger.web3 import (
    DistributorClient,
    MemoryOutbox,
    Outbox,
    OutboxEntry,
    PostgresOutbox,
    Web3Anchor,
    load_signer,
    open_web3_ledger,
)
from grass.ledger.web3.anchor import WriterHook
from grass.ledger.web3.outbox import OutboxStatus, called_contract
from grass.postgres.migrate import migrate
from grass.storage.memory import MemoryStorage
from tests.ledger.conftest import Deployment, _deployment
from tests.ledger.evm import EvmNode, anvil_node, eth_tester_node
from tests.storage.postgres.conftest import open_test_database, temporary_schema


@pytest.fixture
def autojump_clock() -> MockClock:
    # Worker threads and a real node: time must pass at its real rate.
    return MockClock(rate=1.0)


@pytest.fixture(params=["eth-tester", "anvil"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    if request.param == "anvil":
        return _deployment(anvil_node(request.getfixturevalue("anvil_url")))
    return _deployment(eth_tester_node())


@asynccontextmanager
async def open_ledger(
    d: Deployment,
    *,
    journal: Journal,
    outbox: Outbox,
    confirmations: int = 2,
    step_hook: StepHook | None = None,
    writer_hook: WriterHook | None = None,
) -> AsyncIterator[Web3Anchor]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.node.mine_forever)
        async with open_web3_ledger(
            d.node.client(d.address),
            d.signer,
            journal=journal,
            outbox=outbox,
            confirmations=confirmations,
            poll_interval=0.02,
            step_hook=step_hook,
            writer_hook=writer_hook,
        ) as ledger:
            anchor = ledger.anchor
            assert isinstance(anchor, Web3Anchor)
            yield anchor
        nursery.cancel_scope.cancel()


def credit(key: str, user: str = "alice", amount: int = 10, epoch: int = 1) -> Credit:
    return Credit(key=key, user_id=user, amount=amount, epoch=epoch)


class Crash(Exception):
    pass


Store = Callable[[], AbstractAsyncContextManager[tuple[Journal, Outbox]]]


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Opens a journal and an outbox: in memory (objects that stand for the store and outlive
    the "process"), or in PostgreSQL (each open a new pool, as a restarted process has)."""
    if request.param == "memory":
        journal, outbox = MemoryJournal(), MemoryOutbox()

        @asynccontextmanager
        async def memory() -> AsyncIterator[tuple[Journal, Outbox]]:
            yield journal, outbox

        yield memory
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, prefix="web3store") as name:

        @asynccontextmanager
        async def postgres() -> AsyncIterator[tuple[Journal, Outbox]]:
            async with open_test_database(dsn, name) as db:
                await migrate_ledger_tables(db)
                yield PostgresJournal(db), PostgresOutbox(db)

        yield postgres


async def test_crash_after_signing_then_restart_broadcasts_the_same_transaction(
    deployment, store, autojump_clock
):
    async def crash(step: str) -> None:
        raise Crash(step)

    async with (
        store() as (journal, outbox),
        open_ledger(deployment, journal=journal, outbox=outbox, writer_hook=crash) as a,
    ):
        await journal.record([credit("a1"), credit("b1", user="bob")])
        ledger = AnchoredLedger(journal, a)
        with pytest.raises(AnchorFailed, match="Crash"):
            await ledger.settle(1)
        assert a.signed == {1: 1}
        (entry,) = await outbox.pending(a.client.address)
        # Signed and stored, never broadcast: the chain knows nothing.
        assert await a.client.root(1) is None
        assert await a.client.receipt(entry.tx_hash) is None

    async with (
        store() as (journal, outbox),
        open_ledger(deployment, journal=journal, outbox=outbox) as b,
    ):
        ledger = AnchoredLedger(journal, b)
        settled = await ledger.settle(1)
        assert settled.status is SettlementStatus.CONFIRMED
        assert settled.anchor_ref == entry.tx_hash  # the very bytes signed before the crash
        assert b.signed == {}
        assert await b.client.root_posts(1) == [entry.tx_hash]
        assert (await outbox.get(b.client.address, 1)).status is OutboxStatus.MINED
        assert (await ledger.verify()).ok


async def test_a_key_that_is_not_the_owner_is_refused_before_sending(deployment, autojump_clock):
    stranger = deployment.node.new_signer()
    other = Deployment(node=deployment.node, signer=stranger, address=deployment.address)
    journal = MemoryJournal()
    await journal.record([credit("a1")])
    async with open_ledger(other, journal=journal, outbox=MemoryOutbox()) as anchor:
        ledger = AnchoredLedger(journal, anchor)
        with pytest.raises(AnchorFailed) as info:
            await ledger.settle(1)
        assert info.value.details["error"] == "NotOwner"
        assert anchor.signed == {}
        assert (await ledger.settlement(1)).status is SettlementStatus.FAILED


async def test_a_reorg_that_drops_the_root_brings_the_same_transaction_back(
    deployment, autojump_clock
):
    node = deployment.node
    journal, outbox = MemoryJournal(), MemoryOutbox()
    await journal.record([credit("a1")])
    snapshot = await node.run(lambda: node.w3.provider.make_request("evm_snapshot", []))
    reorged = []

    async def reorg(step: str) -> None:
        # The root is mined: roll the chain back to before it, the transaction lost with it.
        if step == "post" and not reorged:
            reorged.append(step)
            await node.run(
                lambda: node.w3.provider.make_request("evm_revert", [snapshot["result"]])
            )
            assert await anchor.client.root(1) is None

    async with open_ledger(
        deployment, journal=journal, outbox=outbox, confirmations=3, step_hook=reorg
    ) as anchor:
        ledger = AnchoredLedger(journal, anchor, step_hook=reorg)
        settled = await ledger.settle(1)
        assert reorged == ["post"]
        assert anchor.signed == {1: 1}
        assert await anchor.client.root_posts(1) == [settled.anchor_ref]
        assert await anchor.confirmations(settled.anchor_ref) >= 3
        assert (await ledger.verify()).ok


async def test_a_transaction_reverted_on_chain_is_an_anchor_failure(anvil_url, autojump_clock):
    d = _deployment(anvil_node(anvil_url))
    node = d.node
    journal = MemoryJournal()
    await journal.record([credit("a1")])

    async def raise_next_epoch(step: str) -> None:
        # Between signing and broadcast the contract moves on (slot 4 is nextEpoch): the
        # transaction passed its gas estimate but reverts in its block.
        slot = "0x" + (4).to_bytes(32, "big").hex()
        value = "0x" + (100).to_bytes(32, "big").hex()
        await node.run(
            lambda: node.w3.provider.make_request("anvil_setStorageAt", [d.address, slot, value])
        )

    async with open_ledger(
        d, journal=journal, outbox=MemoryOutbox(), writer_hook=raise_next_epoch
    ) as anchor:
        ledger = AnchoredLedger(journal, anchor)
        assert await anchor.client.next_epoch() == 0
        with pytest.raises(AnchorFailed) as info:
            await ledger.settle(1)
        assert info.value.details["error"] == "EpochNotIncreasing"
        assert await anchor.client.next_epoch() == 100
        assert (await anchor.outbox.get(anchor.client.address, 1)).status is OutboxStatus.FAILED
        assert (await ledger.settlement(1)).status is SettlementStatus.FAILED


def test_keys_from_hex_and_keystore(tmp_path):
    account = Account.create()
    key = account.key.hex()
    assert load_signer(private_key=key).address == account.address
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(account.key, "s3cret", iterations=2)))
    signer = load_signer(keystore_path=str(path), password="s3cret")
    assert signer.address == account.address
    with pytest.raises(ConfigError, match="cannot decrypt"):
        load_signer(keystore_path=str(path), password="wrong")
    with pytest.raises(ConfigError, match="cannot read"):
        load_signer(keystore_path=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError) as info:
        load_signer(private_key="0x1234")
    assert "1234" not in str(info.value)
    with pytest.raises(ConfigError, match="needs a private key"):
        load_signer()


@pytest.fixture
def outbox_schema(postgres_dsn: str):
    with temporary_schema(postgres_dsn, prefix="outbox") as name:
        yield name


def _entry(contract: str, epoch: int, nonce: int, status=OutboxStatus.SENT) -> OutboxEntry:
    return OutboxEntry(
        contract=contract,
        epoch=epoch,
        root=keccak256(b"r%d" % epoch),
        sender="0x" + "ab" * 20,
        nonce=nonce,
        tx_hash="0x" + f"{nonce:064x}",
        raw_tx=b"\x02signed%d" % nonce,
        status=status,
    )


A = Web3.to_checksum_address("0x" + "a1" * 20)
B = Web3.to_checksum_address("0x" + "b2" * 20)


async def test_the_outbox_keeps_one_entry_per_contract_and_epoch(store):
    async with store() as (_, outbox):
        assert await outbox.get(A, 1) is None
        entry, later, elsewhere = _entry(A, 1, nonce=7), _entry(A, 2, nonce=8), _entry(B, 1, 3)
        for e in (later, entry, elsewhere):
            await outbox.put(e)
        assert await outbox.get(A, 1) == entry
        assert await outbox.get(B, 1) == elsewhere
        assert await outbox.pending(A) == [entry, later]
        assert await outbox.pending(B) == [elsewhere]
        await outbox.put(attrs.evolve(entry, status=OutboxStatus.MINED))
        assert await outbox.pending(A) == [later]
        assert (await outbox.get(A, 1)).status is OutboxStatus.MINED
        assert await outbox.get(B, 1) == elsewhere
        assert await outbox.name_contracts() == 0


def _signed_call(to: str, *, legacy: bool, nonce: int = 0) -> tuple[bytes, str]:
    fees = {"gasPrice": 1} if legacy else {"maxFeePerGas": 2, "maxPriorityFeePerGas": 1}
    tx = {"to": to, "value": 0, "gas": 50_000, "nonce": nonce, "chainId": 1, "data": b"\x01"}
    signed = Account.create().sign_transaction(tx | fees)
    return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()


def test_the_contract_a_signed_transaction_calls():
    assert called_contract(_signed_call(A, legacy=False)[0]) == A
    assert called_contract(_signed_call(B, legacy=True)[0]) == B
    for garbage in (b"", b"\x02signed", b"\xc0", b"\xf8\x01"):
        with pytest.raises(ValueError, match="not a signed contract call"):
            called_contract(garbage)


async def test_entries_stored_before_ledger_0003_are_named_from_their_signed_bytes(
    postgres_dsn, outbox_schema
):
    typed, typed_hash = _signed_call(A, legacy=False)
    legacy, legacy_hash = _signed_call(A, legacy=True, nonce=1)
    rows = [
        (1, typed, typed_hash, "mined"),
        (2, legacy, legacy_hash, "sent"),
        (3, b"\x02garbage", "0x" + "ee" * 32, "sent"),
    ]
    async with open_test_database(postgres_dsn, outbox_schema) as db:
        await migrate(db, OWNER, [m for m in ledger_migrations() if m.version < 3])
        for epoch, raw, tx_hash, status in rows:
            values = (epoch, keccak256(raw), tx_hash, raw, status)

            async def insert(conn, row=values):
                await conn.execute(
                    "INSERT INTO ledger_outbox (epoch, root, sender, nonce, tx_hash, raw_tx,"
                    " status) VALUES ($1, $2, '0xab', $1, $3, $4, $5)",
                    *row,
                )

            await db.run(insert)
        assert await migrate(db, OWNER, ledger_migrations()) == [3]
        outbox = PostgresOutbox(db)
        assert await outbox.get(A, 1) is None  # not named yet: no writer sees it
        assert await outbox.name_contracts() == 2
        assert (await outbox.get(A, 1)).tx_hash == typed_hash
        assert [e.tx_hash for e in await outbox.pending(A)] == [legacy_hash]
        # The garbage row stays unnamed (with a warning), out of every writer's sight.
        assert await outbox.name_contracts() == 0
        assert await outbox.get(A, 3) is None


async def test_a_store_moved_to_a_newly_deployed_contract_anchors_there(
    deployment, store, autojump_clock
):
    first = deployment
    node = first.node
    second = Deployment(node=node, signer=first.signer, address=node.deploy(first.signer.address))
    async with (
        store() as (journal, outbox),
        open_ledger(first, journal=journal, outbox=outbox) as a,
    ):
        await journal.record([credit("a1"), credit("b1", user="bob")])
        settled = await AnchoredLedger(journal, a).settle(1)
    async with (
        store() as (journal, outbox),
        open_ledger(second, journal=journal, outbox=outbox) as b,
    ):
        # What `grass ledger migrate --to web3` does for each settled epoch. Keyed by epoch
        # alone, the outbox handed this writer the first contract's mined transaction, and it
        # waited for that to show a root on the second contract.
        with trio.fail_after(60):
            ref = await b.post(1, settled.root)
            assert await b.wait_final(1, settled.root, ref) == ref
        assert await b.client.root(1) == settled.root
        assert await a.client.root(1) == settled.root
        assert ref != settled.anchor_ref
        assert (await outbox.get(b.client.address, 1)).tx_hash == ref
        assert (await outbox.get(a.client.address, 1)).tx_hash == settled.anchor_ref
        assert b.signed == {1: 1}


def _web3_config(url: str, address: str, key: str, *, block: int | None = None):
    """The app's web3 settings; ``block`` is ``ledger.contract_block`` (else found on the chain)."""
    config, _ = load_config(
        environ={
            **({} if block is None else {"GRASS_LEDGER_CONTRACT_BLOCK": str(block)}),
            "GRASS_LEDGER": "web3",
            "GRASS_LEDGER_RPC_URL": url,
            "GRASS_LEDGER_CONTRACT_ADDRESS": address,
            "GRASS_LEDGER_PRIVATE_KEY": key,
            "GRASS_LEDGER_CONFIRMATIONS": "1",
            "GRASS_LEDGER_POLL_INTERVAL": "0.02",
        }
    )
    return config


async def test_the_app_opens_the_web3_ledger_from_its_config(anvil_url, autojump_clock):
    d = _deployment(anvil_node(anvil_url))
    block = d.node.deployed_blocks[d.address.lower()]
    config = _web3_config(anvil_url, d.address, d.signer.key.hex(), block=block)
    async with backends.open_ledger(config, backends.store_of(MemoryStorage())) as ledger:
        assert isinstance(ledger.anchor, Web3Anchor)
        await ledger.record([credit("a1")])
        settled = await ledger.settle(1)
        assert settled.status is SettlementStatus.CONFIRMED
        assert await ledger.anchor.anchored(1) == settled.root

    stranger = Account.create()
    config = _web3_config(anvil_url, d.address, stranger.key.hex())
    with pytest.raises(StartupError, match="owned by"):
        async with backends.open_ledger(config, backends.store_of(MemoryStorage())):
            pass
    nobody = _web3_config(anvil_url, "0x" + "00" * 19 + "01", d.signer.key.hex())
    with pytest.raises(StartupError, match="no distributor answers"):
        async with backends.open_ledger(nobody, backends.store_of(MemoryStorage())):
            pass


@pytest.fixture(params=["eth-tester", "anvil"])
def fresh_node(request: pytest.FixtureRequest) -> EvmNode:
    """A node of the test's own: its whole history is there to search."""
    if request.param == "anvil":
        return anvil_node(request.getfixturevalue("own_anvil_url"))
    return eth_tester_node()


async def test_logs_are_read_from_the_deployment_block_in_windows(fresh_node, autojump_clock):
    node = fresh_node
    for _ in range(6):  # history before the contract, which no log query should need
        await node.run(node.mine)
    signer = node.new_signer()
    address = await node.run(lambda: node.deploy(signer.address))
    deployed_at = await node.run(lambda: node.w3.eth.block_number)
    found = DistributorClient(node.w3, address, limiter=node.limiter())  # no block configured
    assert await found.deployment_block() == deployed_at  # found on the chain, once
    journal = MemoryJournal()
    await journal.record([credit("a1")])
    d = Deployment(node=node, signer=signer, address=address)
    async with open_ledger(d, journal=journal, outbox=MemoryOutbox(), confirmations=1) as anchor:
        settled = await AnchoredLedger(journal, anchor).settle(1)
    head = await node.run(lambda: node.w3.eth.block_number)
    windowed = DistributorClient(
        node.w3, address, limiter=node.limiter(), deployed_at=deployed_at, log_window=2
    )
    assert await windowed.root_posts(1) == [settled.anchor_ref]
    assert await found.root_posts(1) == [settled.anchor_ref]
    # The configured block is where the search starts: from after the post, nothing is seen.
    late = DistributorClient(node.w3, address, limiter=node.limiter(), deployed_at=head + 1)
    assert await late.root_posts(1) == []
    with pytest.raises(AnchorFailed, match="no contract"):
        await node.client("0x" + "00" * 19 + "07").deployment_block()


async def test_claimed_amounts_are_read_from_the_contract(deployment, autojump_clock):
    journal = MemoryJournal()
    wallet = bytes.fromhex("ab" * 20)
    await journal.record([credit("a1", amount=30)])
    await journal.link_account("alice", wallet)
    async with open_ledger(deployment, journal=journal, outbox=MemoryOutbox()) as anchor:
        ledger = AnchoredLedger(journal, anchor)
        await ledger.settle(1)
        proof = await ledger.proof("alice", 1)
        assert await ledger.claimed(wallet) == 0
        node = deployment.node
        fn = anchor.client.contract.functions.claim(
            node.w3.to_checksum_address(wallet), 30, list(proof.proof)
        )
        await node.run(
            lambda: node.w3.eth.wait_for_transaction_receipt(fn.transact({"from": node.funder}))
        )
        assert await ledger.claimed(wallet) == 30
        assert await ledger.claimed(bytes(20)) == 0


async def test_a_node_that_stops_answering_leaves_the_settlement_to_a_re_run(
    deployment, autojump_clock
):
    journal = MemoryJournal()
    down = False

    async def node_goes_down(step: str) -> None:
        nonlocal down
        down = down or step == "anchored"

    async with open_ledger(
        deployment, journal=journal, outbox=MemoryOutbox(), step_hook=node_goes_down
    ) as anchor:
        answering = anchor.client.receipt

        async def receipt(tx_hash: str):
            if down:
                raise ConnectionError("connection refused")
            return await answering(tx_hash)

        anchor.client.receipt = receipt  # type: ignore[method-assign]
        await journal.record([credit("a1")])
        ledger = AnchoredLedger(journal, anchor, step_hook=node_goes_down)
        with pytest.raises(AnchorUnreachable, match="ConnectionError"):
            await ledger.settle(1)
        # Posted, and then the node went away: not a failure, the record stays as it was.
        assert (await journal.settlement(1)).status is SettlementStatus.ANCHORED
        down = False
        ledger.step_hook = None
        assert (await ledger.settle(1)).status is SettlementStatus.CONFIRMED
        assert anchor.signed == {1: 1}


async def test_a_transaction_sent_again_is_fine_and_a_refusal_is_not(deployment, autojump_clock):
    d = deployment
    client = d.node.client(d.address)
    nonce = await client.nonce(d.signer.address)
    raw, tx_hash = await client.build_set_root(d.signer, 1, keccak256(b"r"), nonce)
    await client.broadcast(raw)
    await client.broadcast(raw)  # still pending (or already mined, on an automining node)
    await d.node.run(d.node.mine)
    assert (await client.receipt(tx_hash)).ok
    await client.broadcast(raw)  # mined
    with pytest.raises(Exception):  # noqa: B017 - whatever the node calls it
        await client.broadcast(raw[:-3] + b"\x00\x00\x00")  # a bad signature
