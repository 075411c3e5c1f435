"""Storage interfaces: the unit of work over every store, and the smaller stores' Protocols.

The larger stores have a module each: :mod:`grass.storage.users`, ``devices``, ``uptime``,
``earnings``, ``payouts``, ``accounts``, ``node_keys``, ``admin``.

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
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from grass.domain.epochs import Epoch, EpochStatus
from grass.domain.notifications import Notification
from grass.domain.pages import DEFAULT_PAGE_SIZE, InvalidPage, Page
from grass.domain.referrals import Referral, ReferralStatus
from grass.storage.accounts import AccountStore
from grass.storage.admin import AuditStore, BanStore, ConnectionIndex, FlagStore
from grass.storage.devices import DeviceStore
from grass.storage.earnings import EarningsStore
from grass.storage.node_keys import NodeKeyStore
from grass.storage.payouts import PayoutStore
from grass.storage.uptime import UptimeStore
from grass.storage.users import UserStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "EpochStore",
    "InvalidPage",
    "NotificationStore",
    "Page",
    "ReferralStore",
    "Storage",
    "Stores",
]


# --- stores -----------------------------------------------------------------------------------


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
