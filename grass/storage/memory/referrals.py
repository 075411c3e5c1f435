from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.referrals import MAX_LEVEL, Referral, ReferralStatus
from grass.storage.memory._db import Scope, after_row, paginate


class MemoryReferralStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_referrals(self, referrals: Sequence[Referral]) -> None:
        async with self._scope.op() as db:
            for referral in referrals:
                db.require_user(referral.referrer_id)
                db.require_user(referral.referee_id)
                db.referrals.insert(referral)

    async def referrers_of(self, referee_ids: Collection[str]) -> dict[str, tuple[Referral, ...]]:
        async with self._scope.op() as db:
            chains = {
                referee: tuple(
                    sorted(db.referrals.group("referee", referee), key=lambda r: r.level)
                )
                for referee in sorted(set(referee_ids))
            }
            return {referee: chain for referee, chain in chains.items() if chain}

    async def list_referrals(
        self,
        referrer_id: str,
        *,
        level: int | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Referral]:
        async with self._scope.op() as db:
            rows = [
                r
                for r in db.referrals.group("referrer", referrer_id)
                if level is None or r.level == level
            ]
            return paginate(
                rows,
                lambda r: (micros(r.created_at), r.ref),
                (int, str),
                descending=False,
                cursor=cursor,
                limit=limit,
            )

    async def count_referrals(
        self, referrer_id: str, *, status: ReferralStatus | None = None
    ) -> dict[int, int]:
        async with self._scope.op() as db:
            counts = dict.fromkeys(range(1, MAX_LEVEL + 1), 0)
            for r in db.referrals.group("referrer", referrer_id):
                if status is None or r.status is status:
                    counts[r.level] += 1
            return counts

    async def promote_referees(self, referee_ids: Collection[str], status: ReferralStatus) -> int:
        lower = status.below()
        async with self._scope.op() as db:
            changed = [
                r
                for referee in set(referee_ids)
                for r in db.referrals.group("referee", referee)
                if r.status in lower
            ]
            for n, r in enumerate(changed, 1):
                db.referrals.save(attrs.evolve(r, status=status))
                await after_row(n)
            return len(changed)
