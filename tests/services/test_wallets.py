"""The wallet service on every storage backend: links are proven, single-use and final."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from eth_account import Account
from eth_account.messages import encode_defunct

from grass.ledger.abc import AccountConflict, Credit, NoBalance
from grass.ledger.memory import open_memory_ledger
from grass.ledger.mockchain import open_mockchain_ledger
from grass.services.wallets import (
    InvalidSignature,
    WalletNonceNotFound,
    WalletNotLinked,
    Wallets,
    challenge_text,
)
from grass.storage.inprocess import InProcessTokens
from grass.storage.memory import MemoryStorage
from tests.http.conftest import make_actor, quick_config

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _signature(wallet, message: str) -> str:
    return "0x" + bytes(wallet.sign_message(encode_defunct(text=message)).signature).hex()


async def test_link_then_claim(storage):
    config = quick_config()
    async with open_memory_ledger() as ledger:
        wallets = Wallets(ledger, storage.users, InProcessTokens(), lambda: config, lambda: NOW)
        me = (await make_actor(storage)).user.id
        other = (await make_actor(storage)).user.id
        wallet = Account.create()

        challenge = await wallets.challenge(me)
        assert challenge.message == challenge_text(me, challenge.nonce, challenge.expires_at)
        assert challenge.expires_at == NOW + dt.timedelta(seconds=600)
        with pytest.raises(WalletNonceNotFound):  # my nonce is not theirs
            await wallets.link(
                other,
                address=wallet.address,
                nonce=challenge.nonce,
                signature=_signature(wallet, challenge.message),
            )
        with pytest.raises(WalletNotLinked):
            await wallets.wallet(me)
        linked = await wallets.link(
            me,
            address=wallet.address.lower(),
            nonce=challenge.nonce,
            signature=_signature(wallet, challenge.message),
        )
        assert linked == wallet.address
        assert await wallets.wallet(me) == wallet.address
        with pytest.raises(WalletNonceNotFound):  # single use
            await wallets.link(
                me,
                address=wallet.address,
                nonce=challenge.nonce,
                signature=_signature(wallet, challenge.message),
            )

        # The same wallet for another user conflicts in the ledger; nothing is recorded.
        theirs = await wallets.challenge(other)
        with pytest.raises(AccountConflict):
            await wallets.link(
                other,
                address=wallet.address,
                nonce=theirs.nonce,
                signature=_signature(wallet, theirs.message),
            )
        with pytest.raises(WalletNotLinked):
            await wallets.wallet(other)
        theirs = await wallets.challenge(other)
        with pytest.raises(InvalidSignature):
            await wallets.link(
                other,
                address=Account.create().address,
                nonce=theirs.nonce,
                signature=_signature(wallet, theirs.message),
            )

        await ledger.record([Credit(key="k", user_id=me, amount=42, epoch=0)])
        await ledger.settle(0)
        claim = await wallets.claim(me, 0)
        assert (claim.account, claim.cumulative_amount, claim.epoch) == (wallet.address, 42, 0)
        assert claim.root == "0x" + (await ledger.settlement(0)).root.hex()
        # The memory anchor pays no claims: it cannot tell what is left, and says so.
        assert (claim.claimed, claim.claimable) == (None, None)
        with pytest.raises(NoBalance):
            await wallets.claim(other, 0)


async def test_a_claim_says_what_the_chain_still_owes(autojump_clock):
    storage = MemoryStorage()
    config = quick_config()
    async with open_mockchain_ledger(None, block_time=1.0, confirmations=1) as ledger:
        wallets = Wallets(ledger, storage.users, InProcessTokens(), lambda: config, lambda: NOW)
        me = (await make_actor(storage)).user.id
        wallet = Account.create()
        challenge = await wallets.challenge(me)
        await wallets.link(
            me,
            address=wallet.address,
            nonce=challenge.nonce,
            signature=_signature(wallet, challenge.message),
        )
        await ledger.record([Credit(key="k0", user_id=me, amount=42, epoch=0)])
        await ledger.settle(0)
        claim = await wallets.claim(me, 0)
        assert (claim.cumulative_amount, claim.claimed, claim.claimable) == (42, 0, 42)

        chain = ledger.anchor.chain
        proof = await ledger.proof(me, 0)
        tx = chain.claim(proof.account, 42, list(proof.proof), sender=wallet.address)
        while chain.receipt(tx) is None:
            await chain.wait_change()
        assert chain.receipt(tx).ok
        claim = await wallets.claim(me, 0)
        assert (claim.cumulative_amount, claim.claimed, claim.claimable) == (42, 42, 0)

        await ledger.record([Credit(key="k1", user_id=me, amount=8, epoch=1)])
        await ledger.settle(1)
        claim = await wallets.claim(me, 1)
        assert (claim.cumulative_amount, claim.claimed, claim.claimable) == (50, 42, 8)


async def test_a_nonce_expires(autojump_clock):
    # The nonce store decides (Trio time); the user store plays no part: memory will do.
    storage = MemoryStorage()
    config = quick_config()
    async with open_memory_ledger() as ledger:
        wallets = Wallets(ledger, storage.users, InProcessTokens(), lambda: config, lambda: NOW)
        me = (await make_actor(storage)).user.id
        wallet = Account.create()
        challenge = await wallets.challenge(me)
        await trio.sleep(config.ledger.wallet_nonce_ttl + 1)
        with pytest.raises(WalletNonceNotFound):
            await wallets.link(
                me,
                address=wallet.address,
                nonce=challenge.nonce,
                signature=_signature(wallet, challenge.message),
            )


async def test_open_challenges_per_user_are_bounded(storage):
    """Each challenge is kept for its TTL: a client asking in a loop must not grow the store
    without bound (hardening #13: every request's work and state bounded)."""
    config = quick_config()
    nonces = InProcessTokens()
    async with open_memory_ledger() as ledger:
        wallets = Wallets(ledger, storage.users, nonces, lambda: config, lambda: NOW)
        me = (await make_actor(storage)).user.id
        other = (await make_actor(storage)).user.id
        await wallets.challenge(other)
        for _ in range(200):
            newest = await wallets.challenge(me)
        assert 1 <= len(await nonces.tokens_of(me)) <= 8
        wallet = Account.create()
        # The newest challenge still works, and another user's is untouched.
        await wallets.link(
            me,
            address=wallet.address,
            nonce=newest.nonce,
            signature=_signature(wallet, newest.message),
        )
        assert len(await nonces.tokens_of(other)) == 1
