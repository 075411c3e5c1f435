"""Wallet link (EIP-191 over a single-use nonce) and claims, through the app as served."""

from __future__ import annotations

import trio
from eth_account import Account
from eth_account.messages import encode_defunct

from grass.http.api import Call
from grass.http.wallets import ClaimView, WalletRoutes
from grass.ledger.abc import Credit
from grass.ledger.merkle import verify
from grass.services.authentication import Principal
from grass.services.wallets import Claim
from tests.http.conftest import make_actor
from tests.http.helpers import bearer
from tests.storage.conftest import make_user


async def _challenge(client, token):
    response = await client.post("/api/v1/me/wallet/nonce", headers=bearer(token))
    assert response.status_code == 200
    return await response.get_json()


def _sign(wallet, challenge) -> str:
    signed = wallet.sign_message(encode_defunct(text=challenge["message"]))
    return "0x" + bytes(signed.signature).hex()


async def _link(client, token, wallet, challenge, signer=None):
    return await client.post(
        "/api/v1/me/wallet",
        json={
            "address": wallet.address,
            "nonce": challenge["nonce"],
            "signature": _sign(signer or wallet, challenge),
        },
        headers=bearer(token),
    )


async def _error(response) -> str:
    return (await response.get_json())["error"]["code"]


async def test_link_once_with_a_fresh_nonce(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    wallet = Account.create()
    challenge = await _challenge(client, me.session_token)
    assert f"User: {me.user.id}" in challenge["message"]
    assert challenge["nonce"] in challenge["message"]

    response = await client.get("/api/v1/me/wallet", headers=bearer(me.session_token))
    assert (response.status_code, await _error(response)) == (404, "wallet_not_linked")
    response = await _link(client, me.session_token, wallet, challenge)
    assert response.status_code == 200
    assert (await response.get_json()) == {"address": wallet.address}
    response = await client.get("/api/v1/me/wallet", headers=bearer(me.api_key))
    assert (await response.get_json()) == {"address": wallet.address}

    # The nonce is spent: the same request again is refused.
    again = await _link(client, me.session_token, wallet, challenge)
    assert (again.status_code, await _error(again)) == (404, "wallet_nonce_not_found")
    # A link is final: another wallet, even properly signed, conflicts.
    other_wallet = Account.create()
    response = await _link(
        client, me.session_token, other_wallet, await _challenge(client, me.session_token)
    )
    assert (response.status_code, await _error(response)) == (409, "account_conflict")


async def test_bad_signatures_and_foreign_nonces_are_refused(full_app):
    me = await make_actor(full_app.storage)
    you = await make_actor(full_app.storage)
    client = full_app.client()
    wallet, mallory = Account.create(), Account.create()

    challenge = await _challenge(client, me.session_token)
    response = await _link(client, me.session_token, wallet, challenge, signer=mallory)
    assert (response.status_code, await _error(response)) == (422, "invalid_signature")
    # ...and that attempt spent the nonce.
    response = await _link(client, me.session_token, wallet, challenge)
    assert response.status_code == 404

    # Another user's nonce does not exist for me, even with a valid signature of its text.
    theirs = await _challenge(client, you.session_token)
    response = await _link(client, me.session_token, wallet, theirs)
    assert (response.status_code, await _error(response)) == (404, "wallet_nonce_not_found")
    # A signature of another text (here: garbage of the right shape) is refused too.
    challenge = await _challenge(client, me.session_token)
    response = await client.post(
        "/api/v1/me/wallet",
        json={"address": wallet.address, "nonce": challenge["nonce"], "signature": "0x1234"},
        headers=bearer(me.session_token),
    )
    assert (response.status_code, await _error(response)) == (422, "invalid_signature")
    # Nothing was linked by any of it: a proper link still works.
    response = await _link(
        client, me.session_token, wallet, await _challenge(client, me.session_token)
    )
    assert response.status_code == 200


async def test_concurrent_links_with_one_nonce_link_once(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    wallet = Account.create()
    challenge = await _challenge(client, me.session_token)
    statuses = []

    async def attempt():
        statuses.append((await _link(client, me.session_token, wallet, challenge)).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(attempt)
    assert sorted(statuses) == [200] + [404] * 7


async def test_claim_for_the_linked_wallet(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    ledger = full_app.ledger
    await ledger.record([Credit(key="c1", user_id=me.user.id, amount=7_000_000, epoch=1)])
    await ledger.settle(1)
    response = await client.get("/api/v1/me/claims/1", headers=bearer(me.session_token))
    assert (response.status_code, await _error(response)) == (404, "wallet_not_linked")

    wallet = Account.create()
    challenge = await _challenge(client, me.session_token)
    assert (await _link(client, me.session_token, wallet, challenge)).status_code == 200
    await ledger.record([Credit(key="c2", user_id=me.user.id, amount=3_000_000, epoch=2)])
    await ledger.settle(2)
    # The link applies from the next settlement: epoch 1 still pays the derived account.
    response = await client.get("/api/v1/me/claims/1", headers=bearer(me.session_token))
    assert response.status_code == 404
    response = await client.get("/api/v1/me/claims/2", headers=bearer(me.api_key))
    assert response.status_code == 200
    claim = await response.get_json()
    assert claim["account"] == wallet.address
    assert claim["cumulative_amount"] == 10_000_000
    assert claim["epoch"] == 2
    # The app's ledger here anchors in memory, which pays no claims: nothing to tell.
    assert (claim["claimed"], claim["claimable"]) == (None, None)
    root = bytes.fromhex(claim["root"][2:])
    assert root == (await ledger.settlement(2)).root
    proof = [bytes.fromhex(p[2:]) for p in claim["proof"]]
    assert verify(root, bytes.fromhex(wallet.address[2:]), 10_000_000, proof)

    for path, status, code in [
        ("/api/v1/me/claims/3", 404, "epoch_not_found"),
        ("/api/v1/me/claims/x1", 422, "validation_failed"),
    ]:
        response = await client.get(path, headers=bearer(me.session_token))
        assert (response.status_code, await _error(response)) == (status, code)


async def test_claim_epoch_is_ascii_digits_in_range(full_app):
    me = await make_actor(full_app.storage)
    client = full_app.client()
    # "²" passes str.isdigit() and int() refuses it (a 500 once); int() reads "\u0661" as 1.
    for segment in ("%C2%B2", "%D9%A1", "-1", "1.0", "9223372036854775808", "0x1"):
        response = await client.get(f"/api/v1/me/claims/{segment}", headers=bearer(me.api_key))
        assert response.status_code == 422, segment
        error = (await response.get_json())["error"]
        assert error["code"] == "validation_failed"
        assert list(error["details"]["fields"]) == ["epoch"]
    response = await client.get("/api/v1/me/claims/9223372036854775807", headers=bearer(me.api_key))
    assert (response.status_code, await _error(response)) == (404, "epoch_not_found")


async def test_claim_epoch_is_documented_as_an_integer(full_app):
    response = await full_app.client().get("/openapi.json")
    operation = (await response.get_json())["paths"]["/api/v1/me/claims/{epoch}"]["get"]
    (param,) = operation["parameters"]
    assert param["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


async def test_the_claim_handler_alone_maps_the_service_s_claim_to_its_view():
    """A handler is a method of its resource class: callable without an app."""
    asked = []
    claim = Claim(
        epoch=3,
        account="0x" + "ab" * 20,
        cumulative_amount=70,
        proof=("0x" + "00" * 32,),
        root="0x" + "11" * 32,
        claimed=20,
        claimable=50,
    )

    class Wallets:
        async def claim(self, user_id: str, epoch: int) -> Claim:
            asked.append((user_id, epoch))
            return claim

    user = make_user()
    call = Call(
        principal=Principal(user, session_hash="h"),
        path={"epoch": "3"},
        query=None,
        body=None,
        ip="192.0.2.1",
        user_agent=None,
    )
    view = await WalletRoutes(Wallets()).get_claim(call)  # type: ignore[arg-type]
    assert asked == [(user.id, 3)]
    assert view == ClaimView(
        epoch=3,
        account=claim.account,
        cumulative_amount=70,
        proof=claim.proof,
        root=claim.root,
        claimed=20,
        claimable=50,
    )
