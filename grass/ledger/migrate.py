"""Move a ledger to another backend: ``grass ledger migrate --from A --to B``.

What moves depends on whether the two ledgers share their journal (the store):

- different journals (memory -> postgres): every credit is copied (idempotent: a re-run copies
  nothing twice), then each settled epoch is settled again on the target, in order, each wallet
  link replayed just before the first epoch it applies to, so the target's trees are the
  source's;
- one journal (postgres -> mockchain -> web3 on one database): the settlement records are
  already there; each confirmed epoch is re-anchored through ``target.settle`` (its lock, its
  idempotent post and its wait for finality), which posts the recorded root on the target's
  anchor and leaves the record - and the source anchor's references - as they are.

Every epoch is checked root by root before the next one moves: the root recomputed from the
source's journal (and from the target's when it is another), the settlement record's root and
what the target's anchor now holds must be one value, or the migration stops with
VerificationFailed naming the epoch and what had moved. The target is then verified as a whole.
Only confirmed settlements move; the others are reported as skipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from grass.ledger.abc import (
    Link,
    Progress,
    Settlement,
    SettlementStatus,
    VerificationFailed,
    VerifyReport,
    no_progress,
)
from grass.ledger.anchored import AnchoredLedger

#: What happened to an epoch on the target.
SETTLED = "settled"  # a new record in the target's journal (journals apart)
REANCHORED = "re-anchored"  # the root posted on the target's anchor (shared journal)
ALREADY_THERE = "already there"  # the target's anchor held the root already (a re-run)


@attrs.frozen(kw_only=True, slots=True)
class EpochMove:
    epoch: int
    root: bytes
    action: str
    source_ref: str | None  # the source anchor's reference (None: it holds no root)
    target_ref: str | None


@attrs.frozen(kw_only=True, slots=True)
class MigrationReport:
    shared_journal: bool
    credits_copied: int
    credits_already_there: int
    links_copied: int
    epochs: tuple[EpochMove, ...]
    skipped: tuple[Settlement, ...]  # not confirmed on the source: not moved
    verify: VerifyReport


def _hex(root: bytes | None) -> str | None:
    return None if root is None else "0x" + root.hex()


def _check(epoch: int, roots: Mapping[str, bytes | None], moves: list[EpochMove]) -> None:
    if len(set(roots.values())) != 1:
        raise VerificationFailed(
            f"epoch {epoch} does not have one root; migration stopped before it moved",
            details={
                "epoch": epoch,
                "roots": {where: _hex(root) for where, root in roots.items()},
                "moved": [m.epoch for m in moves],
            },
        )


async def _copy_credits(
    source: AnchoredLedger, target: AnchoredLedger, progress: Progress, batch: int
) -> tuple[int, int]:
    copied = present = cursor = 0
    while True:
        page, cursor = await source.journal.export(cursor, batch)
        if not page:
            return copied, present
        result = await target.record(page)
        copied += result.new
        present += result.duplicates
        progress("credits", copied + present, None)


async def _replay_link(target: AnchoredLedger, link: Link) -> None:
    """Link on the target from the epoch the link took effect at on the source: a journal
    applies a link from the epoch after the last one it closed, so close up to the one before
    (an epoch closed on the source, settled or not, which takes no credits there either)."""
    if link.first_epoch > 0:
        await target.journal.close(link.first_epoch - 1)
    await target.link_account(link.user_id, link.account)


async def _move_epoch(
    source: AnchoredLedger,
    target: AnchoredLedger,
    record: Settlement,
    moves: list[EpochMove],
    progress: Progress,
) -> EpochMove:
    """Settle (journals apart) or re-anchor (one journal) one confirmed epoch on the target,
    its roots checked to be one value before the target's anchor is touched, and after."""
    epoch = record.epoch
    shared = source.journal is target.journal
    expected = await source.journal_root(epoch, progress=progress)
    # Checked before the target's anchor is touched: a wrong root posted on a chain stays.
    ahead = {
        "recorded on the source": record.root,
        "recomputed from the source's journal": expected,
        # A source whose anchor lost or changed the root is not what the journal says was
        # settled: moving it would hide that the source disagrees.
        "held by the source's anchor": await source.anchor.anchored(epoch),
    }
    existing = None if shared else await target.journal.settlement(epoch)
    if not shared:
        ahead["recomputed from the target's journal"] = await target.journal_root(
            epoch, progress=progress
        )
        if existing is not None:  # a re-run: settle would post this record's root
            ahead["recorded on the target"] = existing.root
    _check(epoch, ahead, moves)
    before = await target.anchor.anchored(epoch)
    moved = await target.settle(epoch, progress=progress)
    if before is not None and before == moved.root:
        action = ALREADY_THERE
    else:
        action = REANCHORED if shared or existing is not None else SETTLED
    after = {
        "recomputed from the source's journal": expected,
        "recorded on the target": moved.root,
        "held by the target's anchor": await target.anchor.anchored(epoch),
    }
    _check(epoch, after, moves)
    return EpochMove(
        epoch=epoch,
        root=record.root,
        action=action,
        source_ref=await source.anchor.ref(epoch),
        target_ref=moved.anchor_ref,
    )


async def migrate_ledger(
    source: AnchoredLedger,
    target: AnchoredLedger,
    *,
    progress: Progress = no_progress,
    batch: int = 10_000,
) -> MigrationReport:
    shared = source.journal is target.journal
    settlements = await source.journal.settlements()
    confirmed = [s for s in settlements if s.status is SettlementStatus.CONFIRMED]
    skipped = tuple(s for s in settlements if s.status is not SettlementStatus.CONFIRMED)
    links = [] if shared else sorted(await source.journal.links(), key=lambda k: k.first_epoch)
    links_copied = len(links)
    copied, present = (0, 0) if shared else await _copy_credits(source, target, progress, batch)
    moves: list[EpochMove] = []
    progress("epochs", 0, len(confirmed))
    for i, record in enumerate(confirmed):
        epoch = record.epoch
        while links and links[0].first_epoch <= epoch:
            await _replay_link(target, links.pop(0))
        moves.append(await _move_epoch(source, target, record, moves, progress))
        progress("epochs", i + 1, len(confirmed))
    # Links made after the last settled epoch apply from the next one: replay them too.
    for link in links:
        await _replay_link(target, link)
    if not shared and settlements:
        # Epochs the source closed (settled or not) take no more credits on the target either.
        await target.journal.close(max(s.epoch for s in settlements))
    return MigrationReport(
        shared_journal=shared,
        credits_copied=copied,
        credits_already_there=present,
        links_copied=links_copied,
        epochs=tuple(moves),
        skipped=skipped,
        verify=await target.verify(progress=progress),
    )
