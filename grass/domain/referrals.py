"""Referral links: a referee registers with a code and is linked to up to three referrers."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib

import attrs

from grass.domain import _checks as check

MAX_LEVEL = 3
#: Hex characters of a referee's reference (96 bits).
REF_LENGTH = 24


def referral_ref(referrer_id: str, referee_id: str) -> str:
    """How a referrer sees one referee: never the referee's user id (which, with legacy node
    auth, was enough to connect nodes under it), but a reference that is stable, different for
    each referrer of the same referee, and reveals nothing of the id (a user id is 126 random
    bits: its hash cannot be inverted by guessing). PostgreSQL computes the same in SQL."""
    digest = hashlib.sha256(f"{referrer_id}:{referee_id}".encode()).hexdigest()
    return digest[:REF_LENGTH]


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

    @property
    def ref(self) -> str:
        """The referee as this link's referrer sees it (:func:`referral_ref`)."""
        return referral_ref(self.referrer_id, self.referee_id)

    def __attrs_post_init__(self) -> None:
        if self.referrer_id == self.referee_id:
            raise check.InvalidModel("referee_id", "a user cannot refer themselves")
