"""The distributor contract over JSON-RPC, for Trio.

web3's asyncio API does not run under Trio, so every call goes through web3's *sync* API in a
worker thread (``trio.to_thread.run_sync``), behind a :class:`trio.CapacityLimiter`. Measured
with ``scripts/bench/web3_calls.py`` (figures in docs/benchmarks.md): the thread hop costs
nothing visible beside a node's round trip (threads run at the rate of direct sync calls), while
the alternative, trio-asyncio + ``AsyncWeb3``, does not run at all with web3 8: its HTTP
provider's session cache calls ``loop.run_in_executor`` with its own thread pool, which
trio-asyncio's loop refuses. The sync provider also serves eth-tester in process, which has no
async provider, and the ledger makes only a handful of calls per settlement anyway.

The limiter is 1 for eth-tester (py-evm is not thread-safe) and a few for HTTP providers.
Only this module and ``anchor.py`` import web3.

Event logs are asked for from the contract's deployment block, never from block 0, and in
windows of :data:`LOG_WINDOW` blocks: public endpoints refuse both a scan from genesis and a
range longer than some thousands of blocks. The deployment block comes from the configuration
(``ledger.contract_block``, printed by ``grass ledger deploy``) or, when it is not set, is found
once by bisecting ``eth_getCode`` over the chain's history (which needs a node that keeps it).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import trio
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception
from web3.types import Nonce, TxParams

from grass.ledger.abc import AnchorFailed
from grass.ledger.contract import ContractError, load_artifact

T = TypeVar("T")

ZERO_ROOT = bytes(32)
_REVERTED_TEXT = "execution reverted: "
#: Blocks per eth_getLogs request (public endpoints cap the range at 10 000 or less).
LOG_WINDOW = 5_000


@attrs.frozen(kw_only=True, slots=True)
class TxReceipt:
    tx_hash: str
    block: int
    ok: bool


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes somewhere in ``exc``'s chain of causes, if any.

    web3 puts them in ``ContractLogicError.data`` (hex) for JSON-RPC nodes; eth-tester raises
    its own TransactionFailed whose argument is the bytes, a wrapped py-evm Revert holding them,
    or (for calls and gas estimates) the text ``execution reverted: b'...'``.
    """
    seen: BaseException | None = exc
    while seen is not None:
        data = getattr(seen, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        for arg in seen.args:
            inner = arg.args[0] if isinstance(arg, Exception) and arg.args else arg
            if isinstance(inner, bytes):
                return inner
            if isinstance(inner, str) and inner.startswith(_REVERTED_TEXT):
                try:
                    value = ast.literal_eval(inner[len(_REVERTED_TEXT) :])
                except (ValueError, SyntaxError):
                    continue
                if isinstance(value, bytes):
                    return value
        seen = seen.__cause__ or seen.__context__
    return None


def decode_revert(exc: BaseException) -> ContractError | None:
    data = revert_data(exc)
    return None if data is None else load_artifact().decode_error(data)


def is_revert(exc: BaseException) -> bool:
    # eth-tester's TransactionFailed is not a web3 exception; its name is all we can rely on
    # without importing eth-tester (a test-only dependency) here.
    return isinstance(exc, ContractLogicError) or type(exc).__name__ == "TransactionFailed"


#: How nodes say they already have (or mined) a transaction sent again: geth "already known",
#: anvil "transaction already imported", others "nonce too low" and "known transaction",
#: eth-tester an expected nonce above the one sent. Anything else is a real refusal.
_ALREADY_HAVE_IT = ("already known", "already imported", "known transaction", "nonce too low")
_NONCE_USED = re.compile(
    r"invalid transaction nonce: expected (?P<expected>\d+), but got (?P<got>\d+)"
)


class DistributorClient:
    """Reads and raw writes on one deployed distributor; every method is a thread hop."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        limiter: trio.CapacityLimiter | None = None,
        deployed_at: int | None = None,
        log_window: int = LOG_WINDOW,
    ) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact().abi
        )
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(4)
        self._deployed_at = deployed_at
        self.log_window = log_window

    @property
    def address(self) -> str:
        return str(self.contract.address)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)

    async def chain_id(self) -> int:
        return int(await self._run(lambda: self.w3.eth.chain_id))

    async def head(self) -> int:
        return int(await self._run(lambda: self.w3.eth.block_number))

    async def root(self, epoch: int) -> bytes | None:
        raw = await self._run(lambda: self.contract.functions.roots(epoch).call())
        root = bytes(raw)
        return None if root == ZERO_ROOT else root

    async def next_epoch(self) -> int:
        return int(await self._run(lambda: self.contract.functions.nextEpoch().call()))

    async def owner(self) -> str:
        return str(await self._run(lambda: self.contract.functions.owner().call()))

    async def claimed(self, account: bytes) -> int:
        checksum = Web3.to_checksum_address(account)
        return int(await self._run(lambda: self.contract.functions.claimed(checksum).call()))

    async def deployment_block(self) -> int:
        """The block holding the contract's creation: configured, or found once and kept."""
        if self._deployed_at is None:
            self._deployed_at = await self._run(self._find_deployment)
        return self._deployed_at

    def _find_deployment(self) -> int:
        eth, address = self.w3.eth, self.contract.address
        high = int(eth.block_number)
        try:
            if not eth.get_code(address, high):
                raise AnchorFailed(
                    "no contract at the distributor's address", details={"address": address}
                )
            low = 0  # invariant: no code at low - 1, code at high
            while low < high:
                middle = (low + high) // 2
                if eth.get_code(address, middle):
                    high = middle
                else:
                    low = middle + 1
        except (Web3Exception, ValueError) as exc:
            raise AnchorFailed(
                "cannot find the distributor's deployment block (the node keeps no history?):"
                " set ledger.contract_block",
                details={"address": address, "error": str(exc)},
            ) from exc
        return high

    async def root_posts(self, epoch: int) -> list[str]:
        """Hashes of the transactions whose RootPosted event names ``epoch``, oldest first."""
        start = await self.deployment_block()
        head = await self.head()
        posts: list[str] = []
        for first in range(start, head + 1, self.log_window):
            last = min(first + self.log_window - 1, head)

            def fetch(first: int = first, last: int = last) -> list[str]:
                logs = self.contract.events.RootPosted.get_logs(
                    from_block=first, to_block=last, argument_filters={"epoch": epoch}
                )
                return [HexBytes(log["transactionHash"]).to_0x_hex() for log in logs]

            posts += await self._run(fetch)
        return posts

    async def nonce(self, account: str, block: str = "pending") -> int:
        return int(
            await self._run(lambda: self.w3.eth.get_transaction_count(account, block))  # type: ignore[arg-type]
        )

    async def receipt(self, tx_hash: str) -> TxReceipt | None:
        def fetch() -> TxReceipt | None:
            try:
                r = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
            return TxReceipt(tx_hash=tx_hash, block=int(r["blockNumber"]), ok=r["status"] == 1)

        return await self._run(fetch)

    async def build_set_root(
        self, sender: LocalAccount, epoch: int, root: bytes, nonce: int
    ) -> tuple[bytes, str]:
        """A signed ``setRoot`` transaction and its hash; AnchorFailed if it would revert."""

        def build() -> tuple[bytes, str]:
            fn = self.contract.functions.setRoot(epoch, root)
            try:
                params: TxParams = {
                    "from": sender.address,
                    "nonce": Nonce(nonce),
                    "chainId": self.w3.eth.chain_id,
                }
                tx = fn.build_transaction(params)
            except Exception as exc:
                if not is_revert(exc):
                    raise
                error = decode_revert(exc)
                raise AnchorFailed(
                    "the contract refuses this root",
                    details={"epoch": epoch, "error": error.name if error else str(exc)},
                ) from exc
            signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
            return bytes(signed.raw_transaction), HexBytes(signed.hash).to_0x_hex()

        return await self._run(build)

    async def why_reverted(self, sender: str, epoch: int, root: bytes) -> str | None:
        """Replay a reverted ``setRoot`` as a call to name the custom error (best effort)."""

        def replay() -> str | None:
            try:
                self.contract.functions.setRoot(epoch, root).call({"from": sender})
            except Exception as exc:
                error = decode_revert(exc)
                return error.name if error else None
            return None

        return await self._run(replay)

    async def broadcast(self, raw: bytes) -> None:
        """Send a signed transaction; a node that already has it (or mined it) is fine."""

        def send() -> None:
            try:
                self.w3.eth.send_raw_transaction(raw)
            except Exception as exc:  # each node and provider raises its own kinds
                text = str(exc).lower()
                if any(answer in text for answer in _ALREADY_HAVE_IT):
                    return
                used = _NONCE_USED.search(text)  # eth-tester's "nonce too low"
                if used and int(used["got"]) < int(used["expected"]):
                    return
                raise

        await self._run(send)
