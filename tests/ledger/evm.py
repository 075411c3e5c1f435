"""EVM nodes for the web3 ledger tests: eth-tester in process, and anvil as a real JSON-RPC node.

anvil comes from npm (``scripts/install-anvil.sh``, run by ``scripts/test`` and ``.ci/run``);
set ``GRASS_TEST_ANVIL`` to use another binary. Where it is missing or does not start the
tests skip on a developer's machine and fail in CI, like PostgreSQL and Redis.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import pytest
import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

from grass.ledger.contract import load_artifact
from grass.ledger.web3 import DistributorClient, connect
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]
NO_TOKEN = "0x" + "00" * 20
T = TypeVar("T")


@attrs.define
class EvmNode:
    """A node, an unlocked funded account on it, and how many threads may call it at once."""

    name: str
    w3: Web3
    concurrency: int
    _limiter: trio.CapacityLimiter | None = None
    #: The block of each contract this node deployed for a test: its clients are given it, as
    #: an operator gives ``ledger.contract_block``, so that no test but the one about the
    #: search reads old states (which anvil may have moved out of memory).
    deployed_blocks: dict[str, int] = attrs.field(factory=dict)

    @property
    def funder(self) -> str:
        return str(self.w3.eth.accounts[0])

    def limiter(self) -> trio.CapacityLimiter:
        """Shared by the ledger's client and the test's own calls (py-evm: one at a time)."""
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self.concurrency)
        return self._limiter

    def call(self, fn: Callable[[], T]) -> T:
        """A call from synchronous set-up, before any thread of the test runs."""
        return fn()

    async def run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self.limiter())

    def mine(self) -> None:
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def new_signer(self) -> LocalAccount:
        """A fresh key holding 10 ether: every test its own writer and nonces."""
        signer: LocalAccount = Account.create()
        self.call(
            lambda: self.w3.eth.wait_for_transaction_receipt(
                self.w3.eth.send_transaction(
                    {"from": self.funder, "to": signer.address, "value": 10**19}
                )
            )
        )
        return signer

    def deploy(self, owner: str) -> str:
        artifact = load_artifact()
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)

        def run() -> str:
            tx = factory.constructor(owner, NO_TOKEN).transact({"from": self.funder})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
            address = str(receipt["contractAddress"])
            self.deployed_blocks[address.lower()] = int(receipt["blockNumber"])
            return address

        return self.call(run)

    def client(self, address: str) -> DistributorClient:
        deployed_at = self.deployed_blocks.get(address.lower())
        return DistributorClient(self.w3, address, limiter=self.limiter(), deployed_at=deployed_at)

    async def mine_forever(self, interval: float = 0.02) -> None:
        """Blocks keep coming, as on a real chain: confirmations need them."""
        while True:
            await self.run(self.mine)
            await trio.sleep(interval)


def eth_tester_node() -> EvmNode:
    # py-evm is not thread-safe: one call at a time.
    return EvmNode(name="eth-tester", w3=Web3(EthereumTesterProvider()), concurrency=1)


def anvil_binary() -> str | None:
    explicit = os.environ.get("GRASS_TEST_ANVIL")
    if explicit:
        return explicit
    found = sorted(glob.glob(str(REPO / ".tools/anvil/node_modules/@foundry-rs/anvil-*/bin/anvil")))
    return found[0] if found else shutil.which("anvil")


def anvil_unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}: CI needs anvil (tests must not skip there)")
    pytest.skip(message)


_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")


@contextmanager
def running_anvil(home: Path) -> Iterator[str]:
    """An anvil on 127.0.0.1 and a port the kernel picks; its URL.

    Its home is ``home``: anvil moves old block states to files under ``~/.foundry``, and
    two test sessions at once (CI runs two Pythons side by side) must not share them.
    """
    binary = anvil_binary()
    if binary is None:
        anvil_unavailable("no anvil binary: run scripts/install-anvil.sh")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", "0", "--accounts", "2", "--chain-id", "31337"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )
    assert process.stdout is not None
    url = None
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            url = f"http://{match[1]}:{match[2]}"
            break
    if url is None:
        process.kill()
        process.wait()
        process.stdout.close()
        anvil_unavailable(f"anvil did not start: {''.join(seen[-5:])}")
    # Keep reading its output so that a full pipe never blocks the node.
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    try:
        assert url is not None
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        drain.join(timeout=10)
        process.stdout.close()


def anvil_node(url: str) -> EvmNode:
    return EvmNode(name="anvil", w3=connect(url), concurrency=4)


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One anvil for the whole session."""
    with running_anvil(tmp_path_factory.mktemp("anvil-home")) as url:
        yield url


@pytest.fixture
def own_anvil_url(tmp_path: Path) -> Iterator[str]:
    """An anvil of the test's own: a short chain whose every state is still in memory."""
    with running_anvil(tmp_path) as url:
        yield url
