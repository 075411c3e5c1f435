"""A simulated chain running the distributor contract's exact rules, in process.

Transactions go to a mempool; :meth:`MockChain.run` mines every mempool transaction into a block
each ``block_time`` seconds (Trio time, so tests run on a virtual clock). A transaction included
in block b of a head h has ``h - b + 1`` confirmations. Faults can be queued: drop the next
submitted transaction (its hash is returned, it never lands), revert the next one, or reorg the
last k blocks (their transactions go back to the mempool, or vanish).

The contract state is never stored: it is the replay of the canonical blocks, so a reorg is just
"forget k blocks and replay". Persistence is an append-only log of JSON lines, one per change
(a submitted or dropped transaction, a mined block, a reorg), each written and fsynced before
the change is applied; opening the same path replays it. A block costs one short line instead
of a rewrite of the whole history. A crash can only tear the last line: the replay stops at it
and truncates it, so the chain is what it was before that change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import trio

from grass.ledger.keccak import keccak256
from grass.ledger.merkle import verify

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


def _tx_json(tx: Tx) -> dict[str, Any]:
    return {"hash": tx.hash, "sender": tx.sender, "fn": tx.fn, "args": tx.args}


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
        if self.path is not None:
            if self.path.exists() and self.path.stat().st_size:
                self._load()
            elif (old := self.path.with_suffix(".json")).exists():
                # Kept as one JSON snapshot (rewritten whole at every change) until this log:
                # carried over as the log's first change, the old file left as it was.
                self._commit({"op": "snapshot", **json.loads(old.read_text(encoding="utf-8"))})
            else:
                self._commit({"op": "open", "owner": owner})

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
        nonce = self._nonce + 1
        body = json.dumps([nonce, sender, fn, args], sort_keys=True)
        tx = Tx(hash="0x" + keccak256(body.encode()).hex(), sender=sender, fn=fn, args=args)
        dropped = self._drop_next > 0
        if dropped:
            self._drop_next -= 1
        # A dropped transaction is logged too: the nonce moved on, so a re-submission must get
        # another hash after a restart as well.
        self._commit({"op": "submit", "nonce": nonce, "tx": _tx_json(tx), "dropped": dropped})
        return tx.hash

    def set_root(self, epoch: int, root: bytes, *, sender: str | None = None) -> str:
        args = {"epoch": epoch, "root": root.hex()}
        return self.submit(sender or self.owner, "setRoot", args)

    def claim(self, account: bytes, amount: int, proof: list[bytes], *, sender: str) -> str:
        args = {"account": account.hex(), "amount": amount, "proof": [p.hex() for p in proof]}
        return self.submit(sender, "claim", args)

    def mine(self) -> int:
        """Mine every mempool transaction into a new block; return its number."""
        reverted = [tx.hash for tx in self.mempool[: self._revert_next]]
        self._revert_next -= len(reverted)
        self._commit({"op": "mine", "count": len(self.mempool), "reverted": reverted})
        self._notify()
        return self.head

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
        self._commit({"op": "reorg", "depth": depth, "requeue": requeue})
        self._notify()
        return removed

    def rewrite_root(self, epoch: int, root: bytes) -> None:
        """Edit history: the setRoot of ``epoch`` now says ``root``. For verify() tests only."""
        self._commit({"op": "rewrite", "tx": self.state.root_tx[epoch], "root": root.hex()})

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
        return {
            "owner": self.owner,
            "nonce": self._nonce,
            "blocks": [[{"tx": _tx_json(r.tx), "error": r.error} for r in b] for b in self._blocks],
            "mempool": [_tx_json(t) for t in self.mempool],
        }

    def _commit(self, change: dict[str, Any]) -> None:
        """Log ``change`` (durably, when persisted), then apply it."""
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(change, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self._apply(change)

    def _apply(self, change: dict[str, Any]) -> None:
        op = change["op"]
        if op == "open":
            self.owner = change["owner"]
            self.state = ContractState(self.owner)
        elif op == "snapshot":
            self.owner, self._nonce = change["owner"], change["nonce"]
            self.mempool = [Tx(**t) for t in change["mempool"]]
            self._blocks = [
                [Receipt(tx=Tx(**r["tx"]), block=0, ok=True, error=r["error"]) for r in b]
                for b in change["blocks"]
            ]
            self._replay()
        elif op == "submit":
            self._nonce = change["nonce"]
            if not change["dropped"]:
                self.mempool.append(Tx(**change["tx"]))
        elif op == "mine":
            count, reverted = change["count"], set(change["reverted"])
            txs, self.mempool = self.mempool[:count], self.mempool[count:]
            number = self.head + 1
            receipts = []
            for tx in txs:
                error = "InjectedRevert" if tx.hash in reverted else self.state.apply(tx)
                receipts.append(Receipt(tx=tx, block=number, ok=error is None, error=error))
                self._where[tx.hash] = number
            self._blocks.append(receipts)
        elif op == "reorg":
            depth = change["depth"]
            removed = [r.tx for block in self._blocks[-depth:] for r in block]
            del self._blocks[-depth:]
            if change["requeue"]:
                self.mempool[:0] = removed
            self._replay()
        elif op == "rewrite":
            for block in self._blocks:
                for i, r in enumerate(block):
                    if r.tx.hash == change["tx"]:
                        tx = attrs.evolve(r.tx, args={**r.tx.args, "root": change["root"]})
                        block[i] = attrs.evolve(r, tx=tx)
            self._replay()
        else:
            raise ValueError(f"unknown change in the chain log: {op!r}")

    def _load(self) -> None:
        assert self.path is not None
        good = 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # torn by a crash mid-write: that change never happened
                try:
                    change = json.loads(line)
                    self._apply(change)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{self.path}: line {number} is not a change of the chain's log: {exc}"
                    ) from None
                good += len(line)
        if good != self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good)

    def state_digest(self) -> dict[str, Any]:
        """Everything observable, as plain data: two equal digests are two equal chains."""
        return {
            **self._snapshot(),
            "roots": {e: r.hex() for e, r in sorted(self.state.roots.items())},
            "claimed": {a.hex(): v for a, v in sorted(self.state.claimed.items())},
            "total_claimed": self.state.total_claimed,
            "next_epoch": self.state.next_epoch,
        }
