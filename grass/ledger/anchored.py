"""The one :class:`~grass.ledger.abc.Ledger`: a journal plus an anchor (see grass.ledger.abc)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import attrs
import trio

from grass.ledger.abc import (
    SETTLE_STEPS,
    AlreadySettled,
    Anchor,
    AnchorFailed,
    AnchorUnreachable,
    Balance,
    ClaimsAnchor,
    Credit,
    EpochCheck,
    EpochNotFound,
    HistoryPage,
    InvalidCredit,
    Journal,
    NoBalance,
    Progress,
    Proof,
    RecordResult,
    Settlement,
    SettlementStatus,
    StepHook,
    VerifyReport,
    check_epoch,
    check_user_id,
    no_progress,
)
from grass.ledger.merkle import MerkleTree, TreeBuild, parse_account

#: Merkle trees kept for proofs: the latest epoch's, which claims use, and the one before.
TREES_KEPT = 2


class AnchoredLedger:
    """The :class:`Ledger`: a journal plus an anchor.

    ``settle`` runs its steps (:data:`SETTLE_STEPS`) in an order that makes a re-run after a
    crash between any two of them safe: the epoch is closed before its balances are read, the
    pending record (with the root) is written before the anchor is touched, and the anchor's
    ``post`` is idempotent, so a re-run finds the record and never writes a second root.

    An epoch already confirmed in the journal (settled through another anchor on a shared
    journal) is *re-anchored*: its recorded root is posted on this anchor and waited for, and
    the record is left as it is. ``grass ledger migrate`` goes through this path, so it takes
    the same lock as a settlement.
    """

    def __init__(
        self, journal: Journal, anchor: Anchor, *, step_hook: StepHook | None = None
    ) -> None:
        self.journal = journal
        self.anchor = anchor
        self.capabilities = journal.capabilities | anchor.capabilities
        self.step_hook = step_hook
        # One settlement at a time per process; across processes the settler is a singleton job.
        self._settling = trio.Lock()
        #: The trees of the last epochs asked for (closed epochs' trees never change), and
        #: the builds under way: a burst of proof requests builds each tree once.
        self._trees: OrderedDict[int, MerkleTree] = OrderedDict()
        self._building: dict[int, trio.Event] = {}

    async def record(self, credits: Sequence[Credit]) -> RecordResult:
        for credit in credits:
            if not isinstance(credit, Credit):
                raise InvalidCredit("record() takes Credit values")
        return await self.journal.record(credits)

    async def balance(self, user_id: str) -> Balance:
        return (await self.journal.balances([check_user_id(user_id)]))[user_id]

    async def balances(self, user_ids: Sequence[str]) -> dict[str, Balance]:
        return await self.journal.balances([check_user_id(u) for u in user_ids])

    async def history(
        self, user_id: str, cursor: str | None = None, limit: int = 50
    ) -> HistoryPage:
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidCredit("limit must be in [1, 1000]", details={"limit": limit})
        return await self.journal.history(check_user_id(user_id), cursor, limit)

    async def link_account(self, user_id: str, account: bytes | str) -> None:
        await self.journal.link_account(check_user_id(user_id), parse_account(account))

    async def _step(self, name: str, progress: Progress) -> None:
        progress(f"settle {name}", SETTLE_STEPS.index(name) + 1, len(SETTLE_STEPS))
        if self.step_hook is not None:
            await self.step_hook(name)

    async def settle(self, epoch: int, *, progress: Progress = no_progress) -> Settlement:
        check_epoch(epoch)
        async with self._settling:
            record = await self.journal.settlement(epoch)
            if record is not None and record.status is SettlementStatus.CONFIRMED:
                return await self._anchor_confirmed(record, progress)
            if record is None:
                later = [s.epoch for s in await self.journal.settlements() if s.epoch > epoch]
                if later:
                    raise AlreadySettled(
                        "a later epoch is already settled; epochs settle in order",
                        details={"epoch": epoch, "later": min(later)},
                    )
                await self.journal.close(epoch)
                await self._step("close", progress)
                tree = await self._tree(epoch, progress)
                await self._step("tree", progress)
                record = Settlement(
                    epoch=epoch,
                    root=tree.root,
                    total=tree.total,
                    user_count=len(tree),
                    anchor_ref=None,
                    status=SettlementStatus.PENDING,
                )
                await self.journal.put_settlement(record)
                await self._step("pending", progress)
            try:
                ref = await self.anchor.post(epoch, record.root)
                await self._step("post", progress)
                record = attrs.evolve(record, anchor_ref=ref, status=SettlementStatus.ANCHORED)
                await self.journal.put_settlement(record)
                await self._step("anchored", progress)
                ref = await self.anchor.wait_final(epoch, record.root, ref)
                await self._step("final", progress)
            except AnchorUnreachable:
                raise  # not a failure: the record stays as it is, for a re-run
            except AnchorFailed:
                await self.journal.put_settlement(
                    attrs.evolve(record, status=SettlementStatus.FAILED)
                )
                raise
            record = attrs.evolve(record, anchor_ref=ref, status=SettlementStatus.CONFIRMED)
            await self.journal.put_settlement(record)
            await self._step("confirmed", progress)
            return record

    async def _anchor_confirmed(self, record: Settlement, progress: Progress) -> Settlement:
        """Put a confirmed record's root on this anchor (a no-op write if it holds it already).

        The record stays the settling ledger's: a failure here marks nothing failed, since the
        epoch is settled elsewhere and its credits count as settled.
        """
        ref = await self.anchor.post(record.epoch, record.root)
        await self._step("post", progress)
        ref = await self.anchor.wait_final(record.epoch, record.root, ref)
        await self._step("final", progress)
        return attrs.evolve(record, anchor_ref=ref)

    async def _tree(self, epoch: int, progress: Progress = no_progress) -> MerkleTree:
        # Proofs come in bursts (every user claims) and a million-leaf tree takes seconds and
        # hundreds of megabytes to build: one build per epoch, shared, and a few kept.
        while (tree := self._trees.get(epoch)) is None:
            building = self._building.get(epoch)
            if building is None:
                return await self._build_shared(epoch, progress)
            await building.wait()  # then look again: that build may have failed
        self._trees.move_to_end(epoch)
        return tree

    async def _build_shared(self, epoch: int, progress: Progress) -> MerkleTree:
        done = self._building[epoch] = trio.Event()
        try:
            tree = await self._build_tree(epoch, progress)
            self._trees[epoch] = tree
            while len(self._trees) > TREES_KEPT:
                self._trees.popitem(last=False)
            return tree
        finally:
            del self._building[epoch]
            done.set()

    async def _build_tree(self, epoch: int, progress: Progress) -> MerkleTree:
        build = TreeBuild(await self.journal.leaves(epoch, progress))
        progress("tree", 0, build.total)
        # A million leaves are about two seconds of hashing: checkpoint between the steps so
        # that the server's other tasks (sockets, heartbeats) keep running meanwhile.
        while build.step():
            progress("tree", build.done, build.total)
            await trio.lowlevel.checkpoint()
        return build.tree()

    async def journal_root(self, epoch: int, *, progress: Progress = no_progress) -> bytes:
        """The epoch's root recomputed from the journal now (not from any record)."""
        return (await self._build_tree(check_epoch(epoch), progress)).root

    async def _as_anchored_here(self, record: Settlement) -> Settlement:
        return attrs.evolve(record, anchor_ref=await self.anchor.ref(record.epoch))

    async def settlement(self, epoch: int) -> Settlement:
        """The journal's record, with the reference this ledger's anchor holds for it."""
        return await self._as_anchored_here(await self._record(epoch))

    async def _record(self, epoch: int) -> Settlement:
        record = await self.journal.settlement(check_epoch(epoch))
        if record is None:
            raise EpochNotFound("no settlement for this epoch", details={"epoch": epoch})
        return record

    async def settlements(self) -> list[Settlement]:
        return [await self._as_anchored_here(s) for s in await self.journal.settlements()]

    async def latest_settlement(self) -> int | None:
        return max((s.epoch for s in await self.journal.settlements()), default=None)

    async def proof(self, user_id: str, epoch: int) -> Proof:
        record = await self._record(epoch)
        account = await self.journal.account_of(check_user_id(user_id), epoch)
        tree = await self._tree(epoch)
        if account not in tree:
            raise NoBalance(
                "no credit up to this epoch", details={"user_id": user_id, "epoch": epoch}
            )
        return Proof(
            epoch=epoch,
            account=account,
            cumulative_amount=tree.amount(account),
            proof=tuple(tree.proof(account)),
            root=record.root,
        )

    async def claimed(self, account: bytes) -> int | None:
        if isinstance(self.anchor, ClaimsAnchor) and "claims" in self.anchor.capabilities:
            return await self.anchor.claimed(parse_account(account))
        return None

    async def verify(self, *, progress: Progress = no_progress) -> VerifyReport:
        checks = []
        records = await self.journal.settlements()
        progress("verify", 0, len(records))
        for i, record in enumerate(records):
            expected = await self.journal_root(record.epoch, progress=progress)
            anchored = await self.anchor.anchored(record.epoch)
            ok = expected == record.root == anchored
            if record.status is not SettlementStatus.CONFIRMED:
                ok = False  # an unfinished settlement is a finding until settle() is re-run
            checks.append(
                EpochCheck(
                    epoch=record.epoch,
                    expected_root=expected,
                    recorded_root=record.root,
                    anchored_root=anchored,
                    ok=ok,
                )
            )
            progress("verify", i + 1, len(records))
        return VerifyReport(epochs=tuple(checks))
