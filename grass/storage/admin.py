"""Storage interfaces of the operators' data: bans, feature-flag overrides, the audit log.

Same conventions and errors as :mod:`grass.storage.abc` (the conformance suite in
``tests/storage/test_admin_stores.py`` pins them on every backend). These stores are part of
:class:`~grass.storage.abc.Stores`, so an admin action and its audit entry commit together in
one ``storage.transaction()``.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from grass.domain.admin import AuditAction, AuditEntry, Ban, BanKind, FlagOverride
from grass.domain.devices import Device
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page

__all__ = ["AuditStore", "BanStore", "ConnectionIndex", "FlagStore"]


class BanStore(Protocol):
    """Bans by id. At most one ACTIVE (not lifted) ban per target: another is a StorageConflict.
    A user ban needs the user, and ``created_by`` an existing user (IntegrityViolation).
    Deleting a user deletes the bans of that user and forgets it as their author."""

    async def add_ban(self, ban: Ban) -> None: ...

    async def get_ban(self, ban_id: str) -> Ban:
        """Lifted bans too."""
        ...

    async def find_ban(self, kind: BanKind, target: str) -> Ban | None:
        """The active ban of this target, if any."""
        ...

    async def lift_ban(self, ban_id: str, at: dt.datetime) -> Ban:
        """Lift an active ban (it stays, with ``lifted_at``); returns it lifted.
        StorageNotFound when no active ban has this id."""
        ...

    async def list_bans(
        self,
        *,
        kind: BanKind | None = None,
        include_lifted: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Ban]:
        """Order: created_at, id (descending)."""
        ...

    async def ban_targets(self, kind: BanKind) -> frozenset[str]:
        """Every actively banned target of this kind (what connections are matched against)."""
        ...


class FlagStore(Protocol):
    """Feature-flag overrides by name. Deleting a user forgets it as ``updated_by``."""

    async def set_flag(self, flag: FlagOverride) -> None:
        """Create or replace the override of ``flag.name``; ``updated_by`` must be a user."""
        ...

    async def clear_flag(self, name: str) -> bool:
        """Drop the override; False when there was none."""
        ...

    async def list_flags(self) -> list[FlagOverride]:
        """Every override, by name (a handful: never paginated here)."""
        ...


class AuditStore(Protocol):
    """Append-only, numbered by the store. Deleting a user keeps its entries, actor None."""

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        """Store an entry (its ``id`` must be None); returns it with its id."""
        ...

    async def list_audit(
        self,
        *,
        actor_id: str | None = None,
        action: AuditAction | None = None,
        target_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[AuditEntry]:
        """Entries matching every given filter. Order: at, id (descending)."""
        ...


class ConnectionIndex(Protocol):
    """The operators' view of the devices every instance holds, read from the device rows (each
    instance's uptime flusher marks its devices online and, when they leave, offline)."""

    async def list_online_devices(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        """Devices of every user whose status is online. Order: device_id."""
        ...
