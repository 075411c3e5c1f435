"""Storage interfaces: one Protocol per aggregate and a unit of work.

Every backend raises the storage errors (:class:`~grass.errors.StorageError` and its subclasses,
in :mod:`grass.errors`) and nothing else; driver errors are mapped in one place per backend.

A bad cursor or limit raises :class:`grass.domain.pages.InvalidPage` (an InvalidInput, 400).

Conventions shared by every store (the conformance suite in ``tests/storage`` pins them):

- All methods are async. A single call is atomic: a batch that fails writes nothing.
- Lists take ``cursor`` (opaque, from a previous :class:`Page`) and ``limit`` (1 to
  :data:`MAX_PAGE_SIZE`) and page by keyset on the documented order, so rows added between two
  calls are never repeated or skipped.
- Time filters are half-open, ``since <= t < until``; ``None`` means unbounded.
- Aggregations return only non-empty groups; services zero-fill with
  :func:`grass.domain.periods.period_starts`. Periods follow :mod:`grass.domain.periods`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from grass.domain.devices import Device
from grass.domain.earnings import (
    EarningEntry,
    EarningsInsertResult,
    EarningSource,
    EarningsTotals,
    ReferralEarning,
)
from grass.domain.epochs import Epoch, EpochStatus
from grass.domain.notifications import Notification
from grass.domain.pages import DEFAULT_PAGE_SIZE, InvalidPage, Page
from grass.domain.periods import EpochTotal, Period, PeriodTotal
from grass.domain.referrals import Referral, ReferralStatus
from grass.domain.score import NetworkScore
from grass.domain.uptime import UptimeBucket, UptimeDelta, UptimeFlushResult, UptimeStats
from grass.domain.users import ApiKey, Session, User, WalletLink
from grass.storage.accounts import AccountStore
from grass.storage.admin import AuditStore, BanStore, ConnectionIndex, FlagStore
from grass.storage.node_keys import NodeKeyStore
from grass.storage.payouts import PayoutStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DeviceStore",
    "EarningsStore",
    "EpochStore",
    "InvalidPage",
    "NotificationStore",
    "Page",
    "ReferralStore",
    "Storage",
    "Stores",
    "UptimeStore",
    "UserStore",
]


# --- stores -----------------------------------------------------------------------------------


class UserStore(Protocol):
    """Users with their sessions, API keys and wallet link.

    Unique: user id, email (stored folded), referral code; session token hash; API key id and
    hash; wallet address (one user each). Deleting a user deletes everything keyed by it:
    sessions, API keys, node keys, wallet, devices, uptime buckets, earnings, referrals on
    either side and notifications. Referral credits other users earned from it stay theirs.
    """

    async def create_user(self, user: User) -> None: ...
    async def get_user(self, user_id: str) -> User: ...
    async def find_user_by_email(self, email: str) -> User | None: ...
    async def find_user_by_referral_code(self, code: str) -> User | None: ...
    async def update_user(self, user: User) -> None: ...
    async def delete_user(self, user_id: str) -> None: ...
    async def list_users(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[User]:
        """Order: created_at, id (ascending)."""
        ...

    async def create_session(self, session: Session) -> None: ...
    async def get_session(self, token_hash: str) -> Session:
        """Revoked and expired sessions too: the caller decides with ``Session.is_active``."""
        ...

    async def revoke_session(self, token_hash: str, at: dt.datetime) -> Session:
        """Idempotent: an already revoked session keeps its first ``revoked_at``."""
        ...

    async def revoke_user_sessions(
        self, user_id: str, at: dt.datetime, *, keep: str | None = None
    ) -> tuple[str, ...]:
        """Revoke every unrevoked session of the user but ``keep``; the hashes revoked now."""
        ...

    async def list_sessions(
        self,
        user_id: str,
        *,
        active_at: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Session]:
        """Order: created_at, token_hash (descending). ``active_at``: only sessions active then."""
        ...

    async def delete_sessions_expired_before(self, before: dt.datetime) -> int: ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def count_live_api_keys(self, user_id: str) -> int:
        """The user's keys not revoked. In a unit of work the user's row stays locked until it
        ends, so that creates checking a cap count one after another."""
        ...

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey: ...
    async def list_api_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[ApiKey]:
        """Order: created_at, id (descending); revoked keys included."""
        ...

    async def revoke_api_key(self, user_id: str, key_id: str, at: dt.datetime) -> ApiKey:
        """NotFound unless the key is the user's; idempotent like ``revoke_session``."""
        ...

    async def touch_api_key(self, key_id: str, at: dt.datetime) -> None: ...

    async def set_wallet(self, link: WalletLink) -> None:
        """Link or replace the user's wallet; an address linked to another user conflicts."""
        ...

    async def get_wallet(self, user_id: str) -> WalletLink | None: ...
    async def remove_wallet(self, user_id: str) -> None: ...


class DeviceStore(Protocol):
    """Devices by ``device_id``. Every device belongs to an existing user (IntegrityViolation);
    its owner never changes (StorageConflict). Removing a device keeps its uptime and earnings."""

    async def create_device(self, device: Device) -> None: ...
    async def get_device(self, device_id: str) -> Device: ...
    async def find_device(self, device_id: str) -> Device | None: ...
    async def update_device(self, device: Device) -> None: ...

    async def set_device_name(self, device_id: str, name: str | None) -> None:
        """The owner's name for the device (None: the default), and nothing else: a flush or
        a scoring pass meanwhile is not undone. StorageNotFound if there is no such device."""
        ...

    async def set_device_paused(self, device_id: str, paused: bool) -> None:
        """Whether the owner paused the device, and nothing else (as ``set_device_name``)."""
        ...

    async def upsert_devices(self, devices: Sequence[Device]) -> None:
        """The gateway's batch: insert new devices; on existing ones overwrite type, version,
        user agent, IP, country, status and last_seen, and keep first_seen, paused, name and
        score (the owner's and the scorer's). The last of several rows for one device wins."""
        ...

    async def delete_device(self, device_id: str) -> None: ...
    async def list_devices(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        """Order: first_seen, device_id (ascending)."""
        ...

    async def count_devices(self, user_id: str) -> int:
        """Every device the user has stored, active or not: what the cap of stored devices
        counts (PostgreSQL: an index-only scan of ``devices_user_idx``)."""
        ...

    async def count_recent_devices(self, user_id: str, *, seen_since: dt.datetime) -> int:
        """The user's devices last seen at or after ``seen_since``: what the device cap
        counts (with the live devices not written yet)."""
        ...

    async def user_ips(self, user_id: str) -> dict[str, tuple[str, ...]]:
        """The user's current IPs, each with its devices (sorted ids)."""
        ...

    async def count_devices_on_ips(
        self, ips: Collection[str], *, since: dt.datetime | None = None
    ) -> dict[str, int]:
        """Devices of any user whose latest IP is each IP (absent IPs: no device); with
        ``since``, only devices seen since then (the score's window)."""
        ...

    async def set_scores(self, scores: Mapping[str, NetworkScore]) -> int:
        """Store each device's score; unknown devices are skipped. Returns the rows updated."""
        ...

    async def mark_offline(self, *, seen_before: dt.datetime) -> int:
        """Online devices not seen since ``seen_before`` become offline (a crashed instance's)."""
        ...


class UptimeStore(Protocol):
    """Uptime buckets keyed by (device_id, bucket_start, ip); filters apply to bucket_start."""

    async def add_uptime(self, deltas: Sequence[UptimeDelta]) -> UptimeFlushResult:
        """One flush: add each delta into its bucket (created at zero when missing); seconds,
        rtt_count, rtt_sum_ms and reconnects add up, rtt_max_ms takes the maximum, user_id
        takes the delta's. Deltas sharing a key in one batch are summed first. Deltas of
        devices that do not exist are skipped and reported (``unknown_devices``), and so are
        deltas naming another user than the device's owner (``foreign_devices``): they never
        change the owner's buckets nor credit anyone."""
        ...

    async def list_buckets(
        self,
        bucket_start: dt.datetime,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[UptimeBucket]:
        """Every bucket starting at ``bucket_start`` (the closer's input). Order: ip, device_id."""
        ...

    async def bucket_starts(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[dt.datetime]:
        """Distinct bucket starts holding uptime, ascending."""
        ...

    async def uptime_stats(
        self,
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        ip: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> UptimeStats:
        """Sum over the buckets matching every given filter (all buckets when none)."""
        ...

    async def uptime_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, UptimeStats]: ...

    async def uptime_by_ip(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]:
        """Per IP, for one user or (``user_id=None``) for everyone."""
        ...

    async def uptime_by_user(
        self,
        user_ids: Collection[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> dict[str, UptimeStats]: ...

    async def uptime_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]:
        """Seconds per period (bucket_start's period in ``tz``), ascending."""
        ...

    async def uptime_by_epoch(self, user_id: str) -> list[EpochTotal]:
        """Seconds per epoch (the epoch whose range holds bucket_start), ascending."""
        ...


class EarningsStore(Protocol):
    """Earnings entries; unique id and idempotency key. Aggregations use ``accrued_at``."""

    async def insert_earnings(self, entries: Sequence[EarningEntry]) -> EarningsInsertResult:
        """Insert a batch. A key already stored (or repeated in the batch) with the same
        ``content()`` is skipped and reported; with other content, or a taken id, the whole batch
        fails with StorageConflict. An unknown user is an IntegrityViolation."""
        ...

    async def find_earning(self, idempotency_key: str) -> EarningEntry | None: ...

    async def list_earnings(
        self,
        user_id: str,
        *,
        source: EarningSource | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        """Order: accrued_at, id (descending)."""
        ...

    async def list_bucket_earnings(
        self,
        bucket_start: dt.datetime,
        *,
        source: EarningSource | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[EarningEntry]:
        """Entries paying for one bucket (the closer's correction pass). Order: id."""
        ...

    async def earnings_totals(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> EarningsTotals:
        """For one user or (``user_id=None``) everyone; by_source lists every source."""
        ...

    async def count_earning_users(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> int: ...

    async def earnings_series(
        self,
        user_id: str,
        *,
        period: Period,
        tz: str = "UTC",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: EarningSource | None = None,
        device_id: str | None = None,
    ) -> list[PeriodTotal]: ...

    async def earnings_by_epoch(self, user_id: str) -> list[EpochTotal]: ...

    async def earnings_by_device(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]:
        """Entries naming a device only."""
        ...

    async def earnings_by_ip(
        self, user_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> dict[str, int]: ...

    async def referral_earnings(
        self,
        referrer_id: str,
        *,
        referee_ids: Collection[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[ReferralEarning]:
        """Referral credits per (level, referee), ordered so; only those referees' when given
        (a page of the referral list)."""
        ...


class ReferralStore(Protocol):
    """Links keyed by (referrer, referee); a referee has at most one referrer per level. Both
    users must exist (IntegrityViolation)."""

    async def add_referrals(self, referrals: Sequence[Referral]) -> None: ...

    async def referrers_of(self, referee_ids: Collection[str]) -> dict[str, tuple[Referral, ...]]:
        """Each referee's chain, by level; referees without referrer are absent."""
        ...

    async def list_referrals(
        self,
        referrer_id: str,
        *,
        level: int | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Referral]:
        """Order: created_at, then the referee's reference as this referrer sees it
        (``Referral.ref``), ascending: the cursor names no user id."""
        ...

    async def count_referrals(
        self, referrer_id: str, *, status: ReferralStatus | None = None
    ) -> dict[int, int]:
        """Referees per level (with that status, when given), every level 1 to 3 present."""
        ...

    async def promote_referees(self, referee_ids: Collection[str], status: ReferralStatus) -> int:
        """Raise each referee to ``status`` (pending < active < qualified; never lowered). The
        status belongs to the referee: every link naming it changes. Returns rows changed."""
        ...


class NotificationStore(Protocol):
    async def add_notification(self, notification: Notification) -> None: ...
    async def list_notifications(
        self,
        user_id: str,
        *,
        unread_only: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Notification]:
        """Order: created_at, id (descending)."""
        ...

    async def mark_read(self, user_id: str, ids: Collection[str], at: dt.datetime) -> int:
        """Unread notifications of this user among ``ids`` become read; others are ignored."""
        ...

    async def mark_all_read(self, user_id: str, at: dt.datetime) -> int: ...
    async def count_unread(self, user_id: str) -> int: ...
    async def delete_notifications_before(self, before: dt.datetime) -> int: ...


class EpochStore(Protocol):
    """Epochs by number; their ranges never overlap (StorageConflict)."""

    async def create_epoch(self, epoch: Epoch) -> None: ...
    async def get_epoch(self, number: int) -> Epoch: ...
    async def epoch_at(self, at: dt.datetime) -> Epoch | None: ...
    async def latest_epoch(self) -> Epoch | None: ...
    async def list_epochs(
        self,
        *,
        status: EpochStatus | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Epoch]:
        """Order: number (descending)."""
        ...

    async def update_epoch(self, epoch: Epoch) -> None:
        """Replace; start and end never change and status never goes back (IntegrityViolation)."""
        ...


# --- unit of work -----------------------------------------------------------------------------


class Stores(Protocol):
    @property
    def users(self) -> UserStore: ...
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def uptime(self) -> UptimeStore: ...
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def referrals(self) -> ReferralStore: ...
    @property
    def notifications(self) -> NotificationStore: ...
    @property
    def epochs(self) -> EpochStore: ...
    @property
    def payouts(self) -> PayoutStore: ...
    @property
    def accounts(self) -> AccountStore: ...
    @property
    def node_keys(self) -> NodeKeyStore: ...
    @property
    def bans(self) -> BanStore: ...
    @property
    def flags(self) -> FlagStore: ...
    @property
    def audit(self) -> AuditStore: ...
    @property
    def connections(self) -> ConnectionIndex: ...


class Storage(Stores, Protocol):
    """The stores, each call its own transaction, and units of work across them.

    ``async with storage.transaction() as tx:`` gives stores whose writes commit together when
    the block exits normally and are all rolled back when it raises (cancellation included).
    Inside, use only ``tx``: the memory backend serialises units of work (calling ``storage``
    from inside one raises RuntimeError), PostgreSQL gives each its own connection. A failed
    operation dooms the unit of work (:class:`TransactionAborted`).
    """

    @property
    def name(self) -> str: ...

    def transaction(self) -> AbstractAsyncContextManager[Stores]: ...
