"""Referral links: a referee registers with a code and is linked to up to three referrers."""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from grass.domain import _checks as check

MAX_LEVEL = 3


class ReferralStatus(enum.StrEnum):
    PENDING = "pending"  # registered, no uptime yet
    ACTIVE = "active"  # has earned uptime
    QUALIFIED = "qualified"  # reached the uptime milestone

    def below(self) -> tuple[ReferralStatus, ...]:
        """The statuses a referee moves up from to reach this one (they never move down)."""
        order = list(ReferralStatus)
        return tuple(order[: order.index(self)])


@attrs.frozen(kw_only=True)
class Referral:
    referrer_id: str = attrs.field(validator=check.short_id)
    referee_id: str = attrs.field(validator=check.short_id)
    level: int = attrs.field(validator=check.between(1, MAX_LEVEL))
    status: ReferralStatus = attrs.field(
        default=ReferralStatus.PENDING, validator=check.member(ReferralStatus)
    )
    #: The code the referee registered with (the level-1 referrer's).
    code: str = attrs.field(validator=check.text(32, min_length=4))
    created_at: dt.datetime = attrs.field(validator=check.utc)

    def __attrs_post_init__(self) -> None:
        if self.referrer_id == self.referee_id:
            raise check.InvalidModel("referee_id", "a user cannot refer themselves")
