"""The anchor on the distributor contract, and the web3 ledger.

One writer task (:meth:`Web3Anchor.run`) owns the signing key and the nonces: every ``post``
is a request to it, handled one at a time. For an epoch it loops on what the *chain* says, so
it is right after a crash, a retry, a dropped transaction or a reorg:

1. the contract holds a root for the epoch: another root is an AnchorFailed; ours is done;
2. the outbox holds our signed transaction for the contract and epoch (not known to have
   failed): if it was mined and reverted, AnchorFailed with the contract's error; if its nonce
   went to another transaction it can never be mined, so it is marked failed and we go on to 3;
   otherwise the same bytes are broadcast again (harmless: same nonce, same hash) and we wait;
3. otherwise: refuse early what the contract would refuse (an epoch not above the latest, a
   key that is not the owner: ``eth_estimateGas`` reverts), sign ``setRoot`` with the next
   nonce, write it to the outbox, *then* broadcast it.

Because the outbox entry is written before the broadcast and step 1 comes first, no crash
between any two of these steps can make a second root transaction for an epoch.
``wait_final`` then waits for ``confirmations`` blocks on top of the receipt's, and goes back
to the writer if a reorg took the transaction away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio
from eth_account.signers.local import LocalAccount

from grass.errors import LedgerError
from grass.ledger.abc import AnchorFailed, AnchorUnreachable, Journal, StepHook
from grass.ledger.anchored import AnchoredLedger
from grass.ledger.memory import MemoryJournal
from grass.ledger.web3.outbox import MemoryOutbox, Outbox, OutboxEntry, OutboxStatus
from grass.ledger.web3.rpc import DistributorClient

#: Called with a step name inside the writer ("signed": after the outbox write, before the
#: broadcast); tests raise from it to simulate a crash there.
WriterHook = Callable[[str], Awaitable[None]]


@attrs.define
class _Request:
    epoch: int
    root: bytes
    done: trio.Event = attrs.field(factory=trio.Event)
    result: str | None = None
    error: BaseException | None = None


class Web3Anchor:
    capabilities: frozenset[str] = frozenset({"persistent", "confirmations", "claims"})

    def __init__(
        self,
        client: DistributorClient,
        signer: LocalAccount,
        outbox: Outbox,
        *,
        confirmations: int = 2,
        poll_interval: float = 1.0,
        writer_hook: WriterHook | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.client = client
        self.signer = signer
        self.outbox = outbox
        self.required = confirmations
        self.poll_interval = poll_interval
        self.writer_hook = writer_hook
        self._requests, self._inbox = trio.open_memory_channel[_Request](0)
        self._running = False
        #: setRoot transactions signed per epoch (tests check a crash never adds one).
        self.signed: dict[int, int] = {}

    # -- reads: any task --------------------------------------------------------------------

    async def anchored(self, epoch: int) -> bytes | None:
        return await self.client.root(epoch)

    async def confirmations(self, ref: str) -> int:
        receipt = await self.client.receipt(ref)
        if receipt is None or not receipt.ok:
            return 0
        return await self.client.head() - receipt.block + 1

    async def ref(self, epoch: int) -> str | None:
        root = await self.client.root(epoch)
        return None if root is None else await self._posted_by(epoch, root, writer=False)

    async def claimed(self, account: bytes) -> int:
        return await self.client.claimed(account)

    async def _posted_by(self, epoch: int, root: bytes, *, writer: bool = True) -> str | None:
        """The transaction that posted ``root`` (on chain) for ``epoch``: ours from the outbox
        when it was mined, else the first RootPosted event for the epoch (another writer).
        Only the writer task (``writer``) updates the outbox."""
        entry = await self.outbox.get(self.client.address, epoch)
        if entry is not None and entry.root == root:
            receipt = await self.client.receipt(entry.tx_hash)
            if receipt is not None and receipt.ok:
                if writer and entry.status is not OutboxStatus.MINED:
                    await self.outbox.put(attrs.evolve(entry, status=OutboxStatus.MINED))
                return entry.tx_hash
        posts = await self.client.root_posts(epoch)
        return posts[0] if posts else None

    # -- writes: through the writer task ------------------------------------------------------

    async def post(self, epoch: int, root: bytes) -> str:
        if not self._running:
            raise AnchorFailed("the web3 writer is not running", details={"epoch": epoch})
        request = _Request(epoch=epoch, root=root)
        await self._requests.send(request)
        await request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    async def wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        try:
            return await self._wait_final(epoch, root, ref)
        except LedgerError:
            raise
        except Exception as exc:
            raise _unreachable(exc, epoch) from exc

    async def _wait_final(self, epoch: int, root: bytes, ref: str) -> str:
        while True:
            receipt = await self.client.receipt(ref)
            if receipt is None or not receipt.ok:
                # Reorged away (or replaced): the writer sees the root through again.
                ref = await self.post(epoch, root)
                continue
            head = await self.client.head()
            if head - receipt.block + 1 >= self.required and await self.client.root(epoch) == root:
                return ref
            await trio.sleep(self.poll_interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: first re-broadcast what a previous process signed for this contract, then
        serve posts."""
        await self.outbox.name_contracts()
        for entry in await self.outbox.pending(self.client.address):
            await self.client.broadcast(entry.raw_tx)
        self._running = True
        task_status.started()
        try:
            async for request in self._inbox:
                try:
                    request.result = await self._ensure(request.epoch, request.root)
                except LedgerError as exc:
                    request.error = exc
                except Exception as exc:  # the node is down, a timeout: the caller retries
                    request.error = _unreachable(exc, request.epoch)
                request.done.set()
        finally:
            self._running = False

    async def _ensure(self, epoch: int, root: bytes) -> str:
        client = self.client
        while True:
            on_chain = await client.root(epoch)
            entry = await self.outbox.get(client.address, epoch)
            if on_chain is not None:
                if on_chain != root:
                    raise AnchorFailed(
                        "the contract holds another root for this epoch",
                        details={"epoch": epoch, "anchored": on_chain.hex()},
                    )
                # Ours, or posted by a writer whose outbox we do not have (a lost store).
                posted = await self._posted_by(epoch, root)
                if posted is not None:
                    return posted
            elif entry is not None and entry.status is not OutboxStatus.FAILED:
                await self._see_through(entry)
            else:
                await self._send(epoch, root)
            await trio.sleep(self.poll_interval)

    async def _see_through(self, entry: OutboxEntry) -> None:
        """One step for a transaction of ours that is not (or no longer) mined."""
        client = self.client
        receipt = await client.receipt(entry.tx_hash)
        if receipt is None and await client.nonce(entry.sender, "latest") > entry.nonce:
            # Mined meanwhile, or its nonce went to another transaction: look once more.
            receipt = await client.receipt(entry.tx_hash)
            if receipt is None:
                await self.outbox.put(attrs.evolve(entry, status=OutboxStatus.FAILED))
                return
        if receipt is None:
            await client.broadcast(entry.raw_tx)
            return
        if not receipt.ok:
            await self.outbox.put(attrs.evolve(entry, status=OutboxStatus.FAILED))
            error = await client.why_reverted(entry.sender, entry.epoch, entry.root)
            raise AnchorFailed(
                "the chain reverted the root's transaction",
                details={"epoch": entry.epoch, "tx": entry.tx_hash, "error": error},
            )
        # Mined and successful but the root is not visible yet: a node behind its own
        # receipts, or a reorg under way. The next round decides.

    async def _send(self, epoch: int, root: bytes) -> None:
        client = self.client
        next_epoch = await client.next_epoch()
        if epoch < next_epoch:
            raise AnchorFailed(
                "a later epoch is already anchored", details={"epoch": epoch, "next": next_epoch}
            )
        # Nonces of transactions signed for this contract by an earlier process and not yet
        # seen by the node count too: reusing one would let a new root replace an old one in
        # the mempool. (Another contract's signed transaction is never broadcast again.)
        pending = [
            e.nonce + 1
            for e in await self.outbox.pending(client.address)
            if e.sender == self.signer.address
        ]
        nonce = max([await client.nonce(self.signer.address, "pending"), *pending])
        raw, tx_hash = await client.build_set_root(self.signer, epoch, root, nonce)
        entry = OutboxEntry(
            contract=client.address,
            epoch=epoch,
            root=root,
            sender=self.signer.address,
            nonce=nonce,
            tx_hash=tx_hash,
            raw_tx=raw,
            status=OutboxStatus.SENT,
        )
        await self.outbox.put(entry)
        self.signed[epoch] = self.signed.get(epoch, 0) + 1
        if self.writer_hook is not None:
            await self.writer_hook("signed")
        await client.broadcast(raw)


def _unreachable(exc: Exception, epoch: int) -> AnchorUnreachable:
    return AnchorUnreachable(
        f"the chain did not answer: {type(exc).__name__}: {exc}", details={"epoch": epoch}
    )


@asynccontextmanager
async def open_web3_ledger(
    client: DistributorClient,
    signer: LocalAccount,
    *,
    journal: Journal | None = None,
    outbox: Outbox | None = None,
    confirmations: int = 2,
    poll_interval: float = 1.0,
    step_hook: StepHook | None = None,
    writer_hook: WriterHook | None = None,
) -> AsyncIterator[AnchoredLedger]:
    """A ledger anchored on the distributor at ``client``; its writer runs while open."""
    anchor = Web3Anchor(
        client,
        signer,
        outbox if outbox is not None else MemoryOutbox(),
        confirmations=confirmations,
        poll_interval=poll_interval,
        writer_hook=writer_hook,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(anchor.run)
        yield AnchoredLedger(journal or MemoryJournal(), anchor, step_hook=step_hook)
        nursery.cancel_scope.cancel()
