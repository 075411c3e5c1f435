"""The referral page: each referee with its status and what it earned the referrer, the counts
per level, and the referrer's rank (ranks are configuration: ``rates.referral_ranks``).

Linking a new user to its referrers happens at registration (the accounts service); statuses
move with the bucket closer (pending -> active at the first paid uptime, qualified at the
milestone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs

from grass.config import Config
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page
from grass.domain.ranks import Rank, parse_ranks, rank_of
from grass.domain.referrals import Referral, ReferralStatus
from grass.storage.abc import ReferralStore
from grass.storage.earnings import EarningsStore


class ReferralStores(Protocol):
    @property
    def referrals(self) -> ReferralStore: ...
    @property
    def earnings(self) -> EarningsStore: ...


@attrs.frozen(kw_only=True)
class RewardedReferral:
    """A referee's referral (at one level) with what it earned the referrer: the read model
    of the referral list (the wire view is grass.http.earnings.RefereeView)."""

    referral: Referral
    #: Referral credits the referrer earned from this referee (at this level), micro-points.
    rewards: int


@attrs.frozen(kw_only=True)
class ReferralSummary:
    counts: dict[int, int]
    qualified: int
    total_rewards: int
    rank: Rank
    next_rank: Rank | None


class ReferralService:
    def __init__(self, stores: ReferralStores, config: Callable[[], Config]) -> None:
        self._stores = stores
        self._config = config

    async def list(
        self,
        referrer_id: str,
        *,
        level: int | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[RewardedReferral]:
        page = await self._stores.referrals.list_referrals(
            referrer_id, level=level, cursor=cursor, limit=limit
        )
        earned = await self._stores.earnings.referral_earnings(
            referrer_id, referee_ids=[r.referee_id for r in page.items]
        )
        rewards = {(r.referee_id, r.level): r.amount for r in earned}
        return Page(
            tuple(
                RewardedReferral(referral=r, rewards=rewards.get((r.referee_id, r.level), 0))
                for r in page.items
            ),
            page.next_cursor,
        )

    async def summary(self, referrer_id: str) -> ReferralSummary:
        referrals = self._stores.referrals
        counts = await referrals.count_referrals(referrer_id)
        qualified_by_level = await referrals.count_referrals(
            referrer_id, status=ReferralStatus.QUALIFIED
        )
        qualified = qualified_by_level[1]  # ranks count direct referees only
        rewards = await self._stores.earnings.referral_earnings(referrer_id)
        rank, next_rank = rank_of(qualified, parse_ranks(self._config().rates.referral_ranks))
        return ReferralSummary(
            counts=counts,
            qualified=qualified,
            total_rewards=sum(r.amount for r in rewards),
            rank=rank,
            next_rank=next_rank,
        )
