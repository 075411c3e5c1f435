"""Wallet routes: the owner links a wallet it signed for and reads its claim. The nonce and
the settled leaf are the owner's, so another user (or the admin) gets 404."""

from __future__ import annotations

import datetime as dt

from eth_account import Account
from eth_account.messages import encode_defunct

from grass.domain.users import WalletLink
from grass.ledger.abc import Credit
from tests.http.helpers import bearer
from tests.http.matrix import Case, Request, World, static


async def _signed_link(world: World) -> Request:
    response = await world.full.client().post(
        "/api/v1/me/wallet/nonce", headers=bearer(world.owner.session_token)
    )
    challenge = await response.get_json()
    wallet = Account.create()
    signed = wallet.sign_message(encode_defunct(text=challenge["message"]))
    return Request(
        path="/api/v1/me/wallet",
        json={
            "address": wallet.address,
            "nonce": challenge["nonce"],
            "signature": "0x" + bytes(signed.signature).hex(),
        },
    )


async def _settled_claim(world: World) -> Request:
    ledger = world.full.ledger
    assert ledger is not None
    owner = world.owner.user.id
    await ledger.link_account(owner, Account.create().address)
    await ledger.record([Credit(key="matrix", user_id=owner, amount=5, epoch=1)])
    await ledger.settle(1)
    return Request(path="/api/v1/me/claims/1")


async def _linked(world: World) -> Request:
    await world.storage.users.set_wallet(
        WalletLink(
            user_id=world.owner.user.id,
            address=Account.create().address,
            linked_at=dt.datetime.now(dt.UTC),
        )
    )
    return Request(path="/api/v1/me/wallet")


CASES: dict[str, Case] = {
    "get_wallet": Case(prepare=_linked, owned=True),
    "wallet_nonce": static("/api/v1/me/wallet/nonce"),
    "link_wallet": Case(prepare=_signed_link, owned=True),
    "get_claim": Case(prepare=_settled_claim, owned=True),
}
