"""``/api/v1/me/wallet*`` and ``/api/v1/me/claims/{epoch}``: link a wallet, read its claims."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.users import ApiScope
from grass.http import schema as s
from grass.http.api import Call, route
from grass.http.auth import USER, user_or_key
from grass.ledger.abc import AccountConflict, EpochNotFound, NoBalance
from grass.services.wallets import (
    InvalidSignature,
    WalletNonceNotFound,
    WalletNotLinked,
    Wallets,
)

TAG = "wallet"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_EPOCH_MAX = 2**63 - 1


@attrs.frozen(kw_only=True)
class ChallengeView:
    nonce: str
    message: str = s.described("Sign exactly this text with personal_sign (EIP-191)")
    expires_at: dt.datetime


@attrs.frozen(kw_only=True)
class LinkWalletBody:
    address: str = s.text(max_length=42, min_length=42, pattern=_ADDRESS)
    nonce: str = s.text(max_length=64, min_length=1)
    signature: str = s.text(max_length=200, min_length=1, pattern=r"^0x[0-9a-fA-F]+$")


@attrs.frozen(kw_only=True)
class WalletView:
    address: str = s.described("The linked wallet (EIP-55); final once linked")


_LATEST_ONLY = (
    "The distributor checks a proof against the root of the latest epoch it holds only:"
    " send the proof of the latest settled epoch (its cumulative amount covers every earlier"
    " one); a proof of an older epoch is refused with InvalidProof."
)


@attrs.frozen(kw_only=True)
class ClaimView:
    epoch: int
    account: str = s.described("The wallet the leaf pays (EIP-55)")
    cumulative_amount: int = s.described("Micro-points earned up to this epoch, in total")
    proof: tuple[str, ...] = s.described(
        "Sibling hashes for claim(account, cumulativeAmount, proof). " + _LATEST_ONLY
    )
    root: str = s.described("The epoch's Merkle root, as anchored")
    claimed: int | None = s.described(
        "Micro-points this wallet has claimed on the contract so far; null when the ledger's"
        " anchor pays no claims (memory, postgres)"
    )
    claimable: int | None = s.described(
        "What claiming with this proof would pay now: cumulative_amount minus claimed"
        " (0 if already claimed); null when the anchor pays no claims"
    )


@attrs.frozen(kw_only=True)
class ClaimPath:
    epoch: int = s.integer(minimum=0, maximum=_EPOCH_MAX)


class WalletRoutes:
    """Link a wallet, read its claims (grass.services.wallets)."""

    def __init__(self, wallets: Wallets) -> None:
        self._wallets = wallets

    @route(
        "POST",
        "/api/v1/me/wallet/nonce",
        summary="Get a single-use text to sign with the wallet to link",
        tag=TAG,
        auth=USER,
        response=ChallengeView,
    )
    async def wallet_nonce(self, call: Call) -> ChallengeView:
        c = await self._wallets.challenge(call.user_id)
        return ChallengeView(nonce=c.nonce, message=c.message, expires_at=c.expires_at)

    @route(
        "POST",
        "/api/v1/me/wallet",
        summary="Link a wallet with an EIP-191 signature of the nonce's text",
        tag=TAG,
        auth=USER,
        body=LinkWalletBody,
        response=WalletView,
        errors=(WalletNonceNotFound, InvalidSignature, AccountConflict),
    )
    async def link_wallet(self, call: Call) -> WalletView:
        body: LinkWalletBody = call.body
        address = await self._wallets.link(
            call.user_id, address=body.address, nonce=body.nonce, signature=body.signature
        )
        return WalletView(address=address)

    @route(
        "GET",
        "/api/v1/me/wallet",
        summary="My linked wallet",
        tag=TAG,
        auth=user_or_key(ApiScope.EARNINGS_READ),
        response=WalletView,
        errors=(WalletNotLinked,),
    )
    async def get_wallet(self, call: Call) -> WalletView:
        return WalletView(address=await self._wallets.wallet(call.user_id))

    @route(
        "GET",
        "/api/v1/me/claims/<epoch>",
        summary="What my linked wallet can claim on the distributor for an epoch",
        description=_LATEST_ONLY,
        tag=TAG,
        auth=user_or_key(ApiScope.EARNINGS_READ),
        path_fields=ClaimPath,
        response=ClaimView,
        errors=(EpochNotFound, NoBalance, WalletNotLinked),
    )
    async def get_claim(self, call: Call) -> ClaimView:
        claim = await self._wallets.claim(call.user_id, int(call.path["epoch"]))
        return ClaimView(
            epoch=claim.epoch,
            account=claim.account,
            cumulative_amount=claim.cumulative_amount,
            proof=claim.proof,
            root=claim.root,
            claimed=claim.claimed,
            claimable=claim.claimable,
        )
