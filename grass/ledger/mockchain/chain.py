"""A simulated chain running the distributor contract's exact rules, in process.

Transactions go to a mempool; :meth:`MockChain.run` mines every mempool transaction into a block
each ``block_time`` seconds (Trio time, so tests run on a virtual clock). A transaction included
in block b of a head h has ``h - b + 1`` confirmations. Faults can be queued: drop the next
submitted transaction (its hash is returned, it never lands), revert the next one, or reorg the
last k blocks (their transactions go back to the mempool, or vanish).

The contract state is never stored: it is the replay of the canonical blocks, so a reorg is just
"forget k blocks and replay". The chain (blocks and mempool) is written to one JSON file after
every change, through a temporary file and ``os.replace``, so a crash leaves the old or the new
file, never half of one; reopening the same path gives the same chain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import trio

from grass.ledger.merkle import keccak256, verify

OWNER = "0x" + "0" * 39 + "1"


@attrs.frozen(kw_only=True, slots=True)
class Tx:
    hash: str
    sender: str
    fn: str  # "setRoot" | "claim"
    args: dict[str, Any]  # JSON values: roots and accounts as hex, amounts as int


@attrs.frozen(kw_only=True, slots=True)
class Receipt:
    tx: Tx
    block: int
    ok: bool
    error: str | None  # the contract's custom error name on a revert


class ContractState:
    """The distributor's storage and its two writes (``setRoot``, ``claim``)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.roots: dict[int, bytes] = {}
        self.root_tx: dict[int, str] = {}
        self.latest_epoch = 0
        self.latest_root = bytes(32)
        self.next_epoch = 0
        self.claimed: dict[bytes, int] = {}
        self.total_claimed = 0

    def apply(self, tx: Tx) -> str | None:
        """Run ``tx``; the error name if it reverts (then nothing changed), else None."""
        if tx.fn == "setRoot":
            if tx.sender != self.owner:
                return "NotOwner"
            epoch, root = tx.args["epoch"], bytes.fromhex(tx.args["root"])
            if root == bytes(32):
                return "ZeroRoot"
            if epoch < self.next_epoch:
                return "EpochNotIncreasing"
            self.roots[epoch] = root
            self.root_tx[epoch] = tx.hash
            self.latest_epoch, self.latest_root, self.next_epoch = epoch, root, epoch + 1
            return None
        if tx.fn == "claim":
            if self.next_epoch == 0:
                return "NoRoot"
            account = bytes.fromhex(tx.args["account"])
            amount = tx.args["amount"]
            proof = [bytes.fromhex(p) for p in tx.args["proof"]]
            if not verify(self.latest_root, account, amount, proof):
                return "InvalidProof"
            if amount <= self.claimed.get(account, 0):
                return "NothingToClaim"
            self.total_claimed += amount - self.claimed.get(account, 0)
            self.claimed[account] = amount
            return None
        return "UnknownFunction"


class MockChain:
    def __init__(
        self, path: Path | str | None = None, *, block_time: float = 2.0, owner: str = OWNER
    ) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.block_time = block_time
        self.owner = owner
        self._blocks: list[list[Receipt]] = []  # block n is self._blocks[n - 1]
        self.mempool: list[Tx] = []
        self._where: dict[str, int] = {}  # tx hash -> block number, canonical chain only
        self._nonce = 0
        self.state = ContractState(owner)
        self._drop_next = 0
        self._revert_next = 0
        self._changed = trio.Event()
        if self.path is not None and self.path.exists():
            self._load()

    # -- views ---------------------------------------------------------------------------

    @property
    def head(self) -> int:
        return len(self._blocks)

    def roots(self, epoch: int) -> bytes | None:
        return self.state.roots.get(epoch)

    def root_tx(self, epoch: int) -> str | None:
        return self.state.root_tx.get(epoch)

    def claimed(self, account: bytes) -> int:
        return self.state.claimed.get(account, 0)

    def receipt(self, tx_hash: str) -> Receipt | None:
        block = self._where.get(tx_hash)
        if block is None:
            return None
        return next(r for r in self._blocks[block - 1] if r.tx.hash == tx_hash)

    def confirmations(self, tx_hash: str) -> int:
        block = self._where.get(tx_hash)
        return 0 if block is None else self.head - block + 1

    def in_mempool(self, tx_hash: str) -> bool:
        return any(tx.hash == tx_hash for tx in self.mempool)

    def blocks(self) -> list[list[Receipt]]:
        return [list(b) for b in self._blocks]

    # -- writes --------------------------------------------------------------------------

    def submit(self, sender: str, fn: str, args: dict[str, Any]) -> str:
        self._nonce += 1
        body = json.dumps([self._nonce, sender, fn, args], sort_keys=True)
        tx = Tx(hash="0x" + keccak256(body.encode()).hex(), sender=sender, fn=fn, args=args)
        if self._drop_next:
            self._drop_next -= 1
            self._save()  # the nonce moved on: a re-submission must get another hash
            return tx.hash
        self.mempool.append(tx)
        self._save()
        return tx.hash

    def set_root(self, epoch: int, root: bytes, *, sender: str | None = None) -> str:
        args = {"epoch": epoch, "root": root.hex()}
        return self.submit(sender or self.owner, "setRoot", args)

    def claim(self, account: bytes, amount: int, proof: list[bytes], *, sender: str) -> str:
        args = {"account": account.hex(), "amount": amount, "proof": [p.hex() for p in proof]}
        return self.submit(sender, "claim", args)

    def mine(self) -> int:
        """Mine every mempool transaction into a new block; return its number."""
        txs, self.mempool = self.mempool, []
        number = self.head + 1
        receipts = []
        for tx in txs:
            if self._revert_next:
                self._revert_next -= 1
                error: str | None = "InjectedRevert"
            else:
                error = self.state.apply(tx)
            receipts.append(Receipt(tx=tx, block=number, ok=error is None, error=error))
            self._where[tx.hash] = number
        self._blocks.append(receipts)
        self._save()
        self._notify()
        return number

    # -- faults --------------------------------------------------------------------------

    def drop_next(self, count: int = 1) -> None:
        self._drop_next += count

    def revert_next(self, count: int = 1) -> None:
        self._revert_next += count

    def reorg(self, depth: int, *, requeue: bool = True) -> list[Tx]:
        """Forget the last ``depth`` blocks; their transactions go back to the mempool first
        (in their old order) if ``requeue``, else they are lost. Returns them."""
        if not 0 < depth <= self.head:
            raise ValueError(f"reorg depth must be in [1, {self.head}]")
        removed = [r.tx for block in self._blocks[-depth:] for r in block]
        del self._blocks[-depth:]
        if requeue:
            self.mempool[:0] = removed
        self._replay()
        self._save()
        self._notify()
        return removed

    def rewrite_root(self, epoch: int, root: bytes) -> None:
        """Edit history: the setRoot of ``epoch`` now says ``root``. For verify() tests only."""
        tx_hash = self.state.root_tx[epoch]
        for block in self._blocks:
            for i, r in enumerate(block):
                if r.tx.hash == tx_hash:
                    tx = attrs.evolve(r.tx, args={**r.tx.args, "root": root.hex()})
                    block[i] = attrs.evolve(r, tx=tx)
        self._replay()
        self._save()

    # -- waiting -------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        """Return after the next block or reorg."""
        await self._changed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Produce a block every ``block_time`` seconds, forever."""
        task_status.started()
        while True:
            await trio.sleep(self.block_time)
            self.mine()

    # -- persistence ---------------------------------------------------------------------

    def _replay(self) -> None:
        # Receipts are re-derived too: a transaction that reverted before may not after.
        self.state = ContractState(self.owner)
        self._where = {}
        for number, block in enumerate(self._blocks, 1):
            for i, r in enumerate(block):
                error = r.error if r.error == "InjectedRevert" else self.state.apply(r.tx)
                block[i] = attrs.evolve(r, block=number, ok=error is None, error=error)
                self._where[r.tx.hash] = number

    def _snapshot(self) -> dict[str, Any]:
        def tx(t: Tx) -> dict[str, Any]:
            return {"hash": t.hash, "sender": t.sender, "fn": t.fn, "args": t.args}

        return {
            "version": 1,
            "owner": self.owner,
            "nonce": self._nonce,
            "blocks": [[{"tx": tx(r.tx), "error": r.error} for r in b] for b in self._blocks],
            "mempool": [tx(t) for t in self.mempool],
        }

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self._snapshot(), f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _load(self) -> None:
        assert self.path is not None
        data = json.loads(self.path.read_text(encoding="utf-8"))
        self.owner = data["owner"]
        self._nonce = data["nonce"]
        self.mempool = [Tx(**t) for t in data["mempool"]]
        self._blocks = [
            [Receipt(tx=Tx(**r["tx"]), block=0, ok=True, error=r["error"]) for r in b]
            for b in data["blocks"]
        ]
        self._replay()

    def state_digest(self) -> dict[str, Any]:
        """Everything observable, as plain data: two equal digests are two equal chains."""
        return {
            **self._snapshot(),
            "roots": {e: r.hex() for e, r in sorted(self.state.roots.items())},
            "claimed": {a.hex(): v for a, v in sorted(self.state.claimed.items())},
            "total_claimed": self.state.total_claimed,
            "next_epoch": self.state.next_epoch,
        }
