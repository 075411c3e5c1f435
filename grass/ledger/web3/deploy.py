"""Deploying the distributor (``grass ledger deploy``, tests) and connecting to a node."""

from __future__ import annotations

from functools import partial

import attrs
import trio
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.providers.rpc import HTTPProvider

from grass.ledger.abc import AnchorFailed
from grass.ledger.contract import DISTRIBUTOR, load_artifact

NO_TOKEN = "0x" + "00" * 20

#: Seconds an RPC request may take before the writer reports the node as not answering.
RPC_TIMEOUT = 30.0


def connect(rpc_url: str) -> Web3:
    """A sync Web3 on an HTTP JSON-RPC endpoint (see ``rpc.py`` for why sync)."""
    return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT}))


@attrs.frozen(kw_only=True)
class Deployed:
    address: str
    block: int  # where its RootPosted events start (``ledger.contract_block``)


def _deploy(w3: Web3, signer: LocalAccount, owner: str, token: str) -> Deployed:
    artifact = load_artifact(DISTRIBUTOR)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(
        Web3.to_checksum_address(owner), Web3.to_checksum_address(token)
    ).build_transaction(
        {
            "from": signer.address,
            "nonce": w3.eth.get_transaction_count(signer.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise AnchorFailed("the distributor's deployment reverted", details={"tx": tx_hash.hex()})
    return Deployed(address=str(receipt["contractAddress"]), block=int(receipt["blockNumber"]))


async def deploy_distributor(
    w3: Web3, signer: LocalAccount, *, owner: str | None = None, token: str = NO_TOKEN
) -> Deployed:
    """Deploy a distributor owned by ``owner`` (default: the signer); its address and block."""
    return await trio.to_thread.run_sync(
        partial(_deploy, w3, signer, owner or signer.address, token)
    )
