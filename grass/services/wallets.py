"""Wallet links and claims: a user proves they hold a wallet, then reads what it can claim.

Linking is a challenge and a response. :meth:`Wallets.challenge` issues a single-use nonce
bound to the user and returns the exact text to sign; :meth:`Wallets.link` takes the address,
the nonce and an EIP-191 ``personal_sign`` signature of that text, recovers the signer with
eth-account and, if it is the address, links it in the ledger (final: see grass.ledger.abc) and
records it on the user (``UserStore.set_wallet``), which ``GET /api/v1/me/wallet`` reads.
The text names the user and the nonce, so a signature links that wallet to that user only,
once. Nonces live in the shared token store (Redis across instances) under their own keys
with a TTL; taking one deletes it atomically, so two concurrent links cannot both use it. A
user holds at most :data:`MAX_OPEN_CHALLENGES` of them: asking for more drops the open ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable

import attrs
from eth_account import Account
from eth_account.messages import encode_defunct

from grass.config import Config
from grass.domain.users import WalletLink
from grass.errors import NotFound, ValidationFailed
from grass.ledger.abc import Ledger, derived_account
from grass.ledger.merkle import InvalidMerkleInput, parse_account, to_checksum_address
from grass.storage.shared_state import TokenStore
from grass.storage.users import UserStore

#: Open challenges per user: each is kept for ``ledger.wallet_nonce_ttl``, so without a cap a
#: client asking in a loop would grow the store by one entry per request.
MAX_OPEN_CHALLENGES = 8


class WalletNonceNotFound(NotFound):
    code = "wallet_nonce_not_found"


class InvalidSignature(ValidationFailed):
    code = "invalid_signature"


class WalletNotLinked(NotFound):
    code = "wallet_not_linked"


@attrs.frozen(kw_only=True)
class Challenge:
    nonce: str
    message: str  # sign exactly this text (EIP-191 personal_sign)
    expires_at: dt.datetime


@attrs.frozen(kw_only=True)
class Claim:
    """The arguments of the distributor's ``claim(account, cumulativeAmount, proof)``, and
    what is left to claim.

    The contract checks a proof against the root of the latest epoch it holds only, and pays
    ``cumulative_amount`` minus what the account claimed before: the proof of the latest
    settled epoch is the one to send, and it covers every earlier epoch.
    """

    epoch: int
    account: str  # EIP-55
    cumulative_amount: int
    proof: tuple[str, ...]  # 0x-hex, 32 bytes each
    root: str
    #: Claimed so far by the account on the anchor, and what this proof would still pay; None
    #: when the anchor pays no claims (memory, postgres).
    claimed: int | None
    claimable: int | None


def challenge_text(user_id: str, nonce: str, expires_at: dt.datetime) -> str:
    return (
        "Link this wallet to your grass account.\n\n"
        f"User: {user_id}\nNonce: {nonce}\nExpires: {expires_at.isoformat()}"
    )


def _key(user_id: str, nonce: str) -> str:
    # Hashed like session tokens: the store never holds a usable nonce.
    digest = hashlib.sha256(f"{user_id}\0{nonce}".encode()).hexdigest()
    return f"wallet-nonce:{digest}"


class Wallets:
    def __init__(
        self,
        ledger: Ledger,
        users: UserStore,
        nonces: TokenStore,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._ledger = ledger
        self._users = users
        self._nonces = nonces
        self._config = config
        self._clock = clock

    async def challenge(self, user_id: str) -> Challenge:
        ttl = float(self._config().ledger.wallet_nonce_ttl)
        nonce = secrets.token_hex(16)
        expires_at = self._clock() + dt.timedelta(seconds=ttl)
        message = challenge_text(user_id, nonce, expires_at)
        if len(await self._nonces.tokens_of(user_id)) >= MAX_OPEN_CHALLENGES:
            await self._nonces.revoke_user(user_id)
        await self._nonces.put(
            _key(user_id, nonce), user_id=user_id, data={"message": message}, ttl=ttl
        )
        return Challenge(nonce=nonce, message=message, expires_at=expires_at)

    async def link(self, user_id: str, *, address: str, nonce: str, signature: str) -> str:
        """Link ``address`` to the user; its EIP-55 form. The nonce is spent either way."""
        try:
            account = parse_account(address)
        except InvalidMerkleInput:
            raise ValidationFailed(
                "not an address", details={"fields": {"address": "must be a 0x address"}}
            ) from None
        key = _key(user_id, nonce)
        record = await self._nonces.get(key)
        # revoke() is the atomic take: only one caller gets True for a nonce.
        if record is None or record.user_id != user_id or not await self._nonces.revoke(key):
            raise WalletNonceNotFound("unknown, used or expired nonce: ask for a new one")
        try:
            signer = Account.recover_message(
                encode_defunct(text=record.data["message"]), signature=signature
            )
        except Exception:  # eth-account raises several types for malformed signatures
            raise InvalidSignature(
                "not a valid signature", details={"fields": {"signature": "malformed"}}
            ) from None
        if parse_account(signer) != account:
            raise InvalidSignature(
                "the signature is not from this address",
                details={"fields": {"signature": "signed by another key"}},
            )
        await self._ledger.link_account(user_id, account)
        # The ledger's link decides where points are paid; the user's record shows it. A retry
        # after a failure here re-links the same wallet, which the ledger accepts.
        checksum = to_checksum_address(account)
        await self._users.set_wallet(
            WalletLink(user_id=user_id, address=checksum, linked_at=self._clock())
        )
        return checksum

    async def wallet(self, user_id: str) -> str:
        link = await self._users.get_wallet(user_id)
        if link is None:
            raise WalletNotLinked("no wallet linked")
        return to_checksum_address(parse_account(link.address))

    async def claim(self, user_id: str, epoch: int) -> Claim:
        proof = await self._ledger.proof(user_id, epoch)
        if proof.account == derived_account(user_id):
            raise WalletNotLinked(
                "no wallet linked for this epoch: link one, it applies from the next settlement",
                details={"epoch": epoch},
            )
        claimed = await self._ledger.claimed(proof.account)
        return Claim(
            epoch=epoch,
            account=to_checksum_address(proof.account),
            cumulative_amount=proof.cumulative_amount,
            proof=tuple("0x" + p.hex() for p in proof.proof),
            root="0x" + proof.root.hex(),
            claimed=claimed,
            claimable=None if claimed is None else max(0, proof.cumulative_amount - claimed),
        )
