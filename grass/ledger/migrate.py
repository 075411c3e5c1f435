"""Move a ledger to another backend: ``grass ledger migrate --from A --to B``.

What moves depends on whether the two ledgers share their journal (the store):

- different journals (memory -> postgres): every credit is copied (idempotent: a re-run copies
  nothing twice), then each settled epoch is settled again on the target, in order, each wallet
  link replayed just before the first epoch it applies to, so the target's trees are the
  source's;
- one journal (postgres -> mockchain -> web3 on one database): the settlement records are
  already there; each root is posted on the target's anchor and the record points to it.

Either way every epoch is checked root by root as it moves (the target's recorded root, the
source's and what the target's anchor now holds must be one value) and the target is verified
as a whole at the end. Only confirmed settlements move; the others are reported as skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from grass.ledger.abc import (
    AnchoredLedger,
    Settlement,
    SettlementStatus,
    VerificationFailed,
    VerifyReport,
)

#: ``progress(phase, done, total)``: called as work advances (``total`` None when unknown).
Progress = Callable[[str, int, int | None], None]


@attrs.frozen(kw_only=True, slots=True)
class EpochMove:
    epoch: int
    root: bytes
    action: str  # "settled" (a new record on the target) or "re-anchored" (shared journal)
    source_ref: str | None
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


def _quiet(phase: str, done: int, total: int | None) -> None:
    return None


async def migrate_ledger(
    source: AnchoredLedger,
    target: AnchoredLedger,
    *,
    progress: Progress = _quiet,
    batch: int = 10_000,
) -> MigrationReport:
    shared = source.journal is target.journal
    settlements = await source.settlements()
    confirmed = [s for s in settlements if s.status is SettlementStatus.CONFIRMED]
    skipped = tuple(s for s in settlements if s.status is not SettlementStatus.CONFIRMED)
    copied = present = 0
    links = [] if shared else sorted(await source.journal.links(), key=lambda k: k.first_epoch)
    if not shared:
        cursor = 0
        while True:
            page, cursor = await source.journal.export(cursor, batch)
            if not page:
                break
            result = await target.record(page)
            copied += result.new
            present += result.duplicates
            progress("credits", copied + present, None)
    moves = []
    for i, record in enumerate(confirmed):
        while links and links[0].first_epoch <= record.epoch:
            link = links.pop(0)
            await target.link_account(link.user_id, link.account)
        existing = await target.journal.settlement(record.epoch)
        if existing is not None and existing.status is SettlementStatus.CONFIRMED:
            ref = await target.anchor.post(record.epoch, existing.root)
            ref = await target.anchor.wait_final(record.epoch, existing.root, ref)
            moved = attrs.evolve(existing, anchor_ref=ref)
            await target.journal.put_settlement(moved)
            action = "re-anchored"
        else:
            moved = await target.settle(record.epoch)
            action = "settled"
        anchored = await target.anchor.anchored(record.epoch)
        if not moved.root == record.root == anchored:
            raise VerificationFailed(
                "the target's root differs from the source's",
                details={
                    "epoch": record.epoch,
                    "source": record.root.hex(),
                    "target": moved.root.hex(),
                    "anchored": anchored.hex() if anchored else None,
                },
            )
        moves.append(
            EpochMove(
                epoch=record.epoch,
                root=record.root,
                action=action,
                source_ref=record.anchor_ref,
                target_ref=moved.anchor_ref,
            )
        )
        progress("epochs", i + 1, len(confirmed))
    # Links made after the last settled epoch apply from the next one: replay them too.
    for link in links:
        await target.link_account(link.user_id, link.account)
    return MigrationReport(
        shared_journal=shared,
        credits_copied=copied,
        credits_already_there=present,
        links_copied=0 if shared else len(await source.journal.links()),
        epochs=tuple(moves),
        skipped=skipped,
        verify=await target.verify(),
    )
