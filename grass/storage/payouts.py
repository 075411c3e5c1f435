"""The bucket closer's store: its input rows, what it paid, and the record of each close.

A close of a bucket has a *revision*: 0 for the first, one more for each correction pass that
paid late uptime. ``record_payouts`` writes a revision's earnings entries, its close record and
the lines it priced first (:class:`FrozenLine`) in ONE atomic call, so after a crash either all
exist or none does; the entries' keys name the bucket, the revision and the recipient, so a
second writer of the same revision fails (StorageConflict) instead of paying twice.
``credited`` says the revision's entries reached the ledger; a close found uncredited is handed
to the ledger again (the ledger's keys make that harmless).

A line of a bucket (one device on one IP) is paid at the score and device type it had when a
revision first paid it: corrections reuse them, so late uptime is paid at the bucket's rate,
not at whatever the device scores days later, and a re-run computes the same amounts.

Backends also provide a :class:`JobLock`: singleton background jobs (the closer, the epoch job)
run on one instance at a time.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from grass.domain import _checks as check
from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningEntry
from grass.domain.payouts import Payout, UptimeLine
from grass.domain.referrals import ReferralStatus
from grass.domain.uptime import UptimeStats


@attrs.frozen(kw_only=True)
class BucketClose:
    bucket_start: dt.datetime = attrs.field(validator=check.utc)
    revision: int = attrs.field(validator=check.non_negative)
    #: The bucket's uptime seconds (all devices) this revision paid for: more seconds in the
    #: bucket later means late uptime, for the correction pass.
    seconds: int = attrs.field(validator=check.non_negative)
    credited: bool = False
    closed_at: dt.datetime = attrs.field(validator=check.utc)


class LineScore(enum.StrEnum):
    """Where the score (and device type) of a bucket line comes from."""

    FROZEN = "frozen"  # fixed by the revision that first paid the line
    STORED = "stored"  # the device's stored score: the line was never paid
    MISSING = "missing"  # the device has no score yet (line.score is 0): the caller scores it


@attrs.frozen(kw_only=True, slots=True)
class FrozenLine:
    """The score and device type a line of a bucket was first paid at, and by which revision."""

    bucket_start: dt.datetime
    device_id: str
    ip: str
    device_type: DeviceType
    score: int
    revision: int


@attrs.frozen(kw_only=True, slots=True)
class ChainLink:
    """One referrer of a referee, as the closer reads it (a bucket has one chain per user)."""

    level: int
    referrer_id: str
    status: ReferralStatus


@attrs.frozen(kw_only=True, slots=True)
class KeyedPayout:
    """A payout about to become an earnings entry under ``key``."""

    key: str
    payout: Payout


@attrs.frozen(kw_only=True, slots=True)
class DeviceWindow:
    """A device's uptime over a trailing window, with what its score also needs."""

    device_id: str
    ip: str | None
    first_seen: dt.datetime
    stats: UptimeStats


class PayoutStore(Protocol):
    async def device_windows(
        self, *, since: dt.datetime, device_ids: Collection[str] | None = None
    ) -> list[DeviceWindow]:
        """Uptime since ``since`` (by bucket start) of the given devices, or of every device
        seen since then; unknown ids are left out."""
        ...

    async def bucket_lines(self, bucket_start: dt.datetime) -> list[tuple[UptimeLine, LineScore]]:
        """Every uptime row of the bucket, priced: with the frozen score and type when a
        revision paid the line already, else with the device's stored type and score (score 0
        when it has none). A removed device counts as an extension."""
        ...

    async def frozen_lines(self, bucket_start: dt.datetime) -> list[FrozenLine]:
        """The bucket's frozen lines, by device and IP."""
        ...

    async def drop_frozen_lines(self, *, before: dt.datetime) -> int:
        """Forget the frozen lines of buckets starting before ``before`` (past the correction
        window: they are never priced again). Returns how many."""
        ...

    async def referral_chains(
        self, referee_ids: Collection[str]
    ) -> dict[str, tuple[ChainLink, ...]]:
        """Each referee's referrers by level (referees without one absent), read from the
        primary: the closer reads back the statuses it wrote."""
        ...

    async def bucket_chains(self, bucket_start: dt.datetime) -> dict[str, tuple[ChainLink, ...]]:
        """:meth:`referral_chains` of the users with uptime in the bucket (one query, so that
        it runs beside :meth:`bucket_lines`)."""
        ...

    async def bucket_milestones(self, bucket_start: dt.datetime, *, seconds: int) -> set[str]:
        """The users with uptime in the bucket, referred at level 1 and not qualified, whose
        uptime written so far (every bucket, every device) is at least ``seconds``."""
        ...

    async def bucket_seconds(
        self, *, since: dt.datetime, until: dt.datetime
    ) -> dict[dt.datetime, int]:
        """Total uptime seconds per bucket start in ``[since, until)``; empty buckets absent."""
        ...

    async def paid_slots(self, bucket_start: dt.datetime) -> dict[str, int]:
        """What the bucket's entries paid so far, summed per :func:`grass.domain.payouts.slot`."""
        ...

    async def get_close(self, bucket_start: dt.datetime) -> BucketClose | None: ...

    async def list_closes(self, *, since: dt.datetime, until: dt.datetime) -> list[BucketClose]:
        """Closes of buckets in ``[since, until)``, by bucket start."""
        ...

    async def uncredited(self) -> list[BucketClose]:
        """Closes whose entries have not all reached the ledger, oldest first."""
        ...

    async def record_payouts(
        self,
        close: BucketClose,
        payouts: Sequence[KeyedPayout],
        *,
        frozen: Sequence[UptimeLine] = (),
        accrued_at: dt.datetime,
    ) -> None:
        """Atomically: insert one entry per payout (``bucket_start`` of the close,
        ``accrued_at`` as given, ``created_at`` the close's ``closed_at``), freeze the score and
        type of each line of ``frozen`` under ``close.revision``, and store ``close``,
        uncredited. StorageConflict, writing nothing, when a key exists, a line is frozen
        already, or ``close.revision`` is not the stored revision plus one (0 when none)."""
        ...

    async def revision_entries(self, close: BucketClose) -> list[EarningEntry]:
        """The entries the revision ``close`` wrote: its keys (from
        :func:`grass.domain.payouts.bucket_key`) and the milestone bonuses of the same call
        (the bucket's milestones created at ``close.closed_at``); what a re-run hands to the
        ledger again."""
        ...

    async def mark_credited(self, bucket_start: dt.datetime, revision: int) -> None:
        """Idempotent; a revision that is not the stored one is left alone."""
        ...


class JobLock(Protocol):
    def hold(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Try to become the one runner of job ``name``: yields True while this process holds
        it (until the block ends), False at once when another instance does."""
        ...
