"""Epochs: fixed-length periods whose totals are frozen when they close."""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from grass.domain import _checks as check


class EpochStatus(enum.StrEnum):
    OPEN = "open"
    CLOSING = "closing"  # totals frozen, settlement on the ledger under way
    SETTLED = "settled"


@attrs.frozen(kw_only=True)
class EpochTotals:
    points: int = attrs.field(validator=check.integer)
    uptime_seconds: int = attrs.field(validator=check.non_negative)
    users: int = attrs.field(validator=check.non_negative)


@attrs.frozen(kw_only=True)
class Epoch:
    """Covers ``start <= t < end``; totals exist exactly once the epoch is no longer open."""

    number: int = attrs.field(validator=check.non_negative)
    name: str = attrs.field(validator=check.text(64))
    start: dt.datetime = attrs.field(validator=check.utc)
    end: dt.datetime = attrs.field(validator=check.utc)
    status: EpochStatus = attrs.field(default=EpochStatus.OPEN, validator=check.member(EpochStatus))
    totals: EpochTotals | None = None

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise check.InvalidModel("end", "must be after start")
        if (self.totals is None) != (self.status is EpochStatus.OPEN):
            raise check.InvalidModel("totals", "are set exactly when the epoch is not open")

    def contains(self, at: dt.datetime) -> bool:
        return self.start <= at < self.end

    def close(self, totals: EpochTotals) -> Epoch:
        if self.status is not EpochStatus.OPEN:
            raise check.InvalidModel("status", f"epoch {self.number} is already {self.status}")
        return attrs.evolve(self, status=EpochStatus.CLOSING, totals=totals)

    def settle(self) -> Epoch:
        if self.status is not EpochStatus.CLOSING:
            raise check.InvalidModel("status", f"epoch {self.number} is {self.status}, not closing")
        return attrs.evolve(self, status=EpochStatus.SETTLED)
