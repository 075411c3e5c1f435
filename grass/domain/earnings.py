"""Earnings entries: every credit, in integer micro-points, with its idempotency key."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

import attrs

from grass.domain import _checks as check

MICRO = 1_000_000  # micro-points per point


class EarningSource(enum.StrEnum):
    UPTIME = "uptime"
    REFERRAL = "referral"
    MILESTONE = "milestone"
    NETWORK = "network"
    ADJUSTMENT = "adjustment"


@attrs.frozen(kw_only=True)
class EarningEntry:
    """One credit.

    ``accrued_at`` is the time the points belong to (a bucket's start for uptime and referral
    credits, the award time otherwise): every aggregation, by period or by epoch, uses it.
    Only an adjustment may be negative.
    """

    id: str = attrs.field(validator=check.short_id)
    user_id: str = attrs.field(validator=check.short_id)
    source: EarningSource = attrs.field(validator=check.member(EarningSource))
    amount: int = attrs.field(validator=check.integer)
    idempotency_key: str = attrs.field(validator=check.text(200))
    accrued_at: dt.datetime = attrs.field(validator=check.utc)
    created_at: dt.datetime = attrs.field(validator=check.utc)
    device_id: str | None = attrs.field(default=None, validator=check.optional_uuid)
    ip: str | None = attrs.field(default=None, validator=check.optional_ip)
    bucket_start: dt.datetime | None = attrs.field(default=None, validator=check.optional_utc)
    #: The referee whose activity earned a referral credit or a referrer's milestone bonus.
    referee_id: str | None = attrs.field(default=None, validator=check.optional_short_id)
    referral_level: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(check.between(1, 3))
    )

    def __attrs_post_init__(self) -> None:
        if self.amount < 0 and self.source is not EarningSource.ADJUSTMENT:
            raise check.InvalidModel("amount", "only an adjustment may be negative")
        is_referral = self.source is EarningSource.REFERRAL
        if is_referral and (self.referee_id is None or self.referral_level is None):
            raise check.InvalidModel("referral_level", "a referral credit names referee and level")
        if not is_referral and self.referral_level is not None:
            raise check.InvalidModel("referral_level", "only a referral credit has a level")

    def content(self) -> tuple[object, ...]:
        """What a retry must repeat exactly: everything but the id and the insertion time."""
        return (
            self.user_id,
            self.source,
            self.amount,
            self.idempotency_key,
            self.accrued_at,
            self.device_id,
            self.ip,
            self.bucket_start,
            self.referee_id,
            self.referral_level,
        )


@attrs.frozen(kw_only=True)
class EarningsInsertResult:
    inserted: int
    #: Keys already stored with the same content: ignored (a retry), in input order.
    duplicates: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class EarningsTotals:
    total: int
    #: Every source, zero where nothing was earned.
    by_source: Mapping[EarningSource, int]


@attrs.frozen(kw_only=True)
class ReferralEarning:
    referee_id: str
    level: int
    amount: int
