"""BanStore, FlagStore and AuditStore in memory."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.admin import AuditAction, AuditEntry, Ban, BanKind, FlagOverride
from grass.domain.devices import Device, DeviceStatus
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.storage.memory._db import Db, Scope, found, paginate

__all__ = ["MemoryAuditStore", "MemoryBanStore", "MemoryConnectionIndex", "MemoryFlagStore"]


def _active(db: Db, ban_id: str) -> Ban:
    ban = db.admin.bans.get(ban_id)
    return found(ban if ban is not None and ban.lifted_at is None else None, "ban", ban_id)


class MemoryBanStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_ban(self, ban: Ban) -> None:
        async with self._scope.op() as db:
            if ban.created_by is not None:
                db.require_user(ban.created_by)
            if ban.kind is BanKind.USER:
                db.require_user(ban.target)
            db.admin.bans.insert(ban)

    async def get_ban(self, ban_id: str) -> Ban:
        async with self._scope.op() as db:
            return found(db.admin.bans.get(ban_id), "ban", ban_id)

    async def find_ban(self, kind: BanKind, target: str) -> Ban | None:
        async with self._scope.op() as db:
            return db.admin.bans.lookup("active", (kind, target))

    async def lift_ban(self, ban_id: str, at: dt.datetime) -> Ban:
        async with self._scope.op() as db:
            lifted = attrs.evolve(_active(db, ban_id), lifted_at=at)
            db.admin.bans.save(lifted)
            return lifted

    async def list_bans(
        self,
        *,
        kind: BanKind | None = None,
        include_lifted: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Ban]:
        async with self._scope.op() as db:
            rows = db.admin.bans.rows() if kind is None else db.admin.bans.group("kind", kind)
            return paginate(
                (b for b in rows if include_lifted or b.lifted_at is None),
                lambda b: (micros(b.created_at), b.id),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def ban_targets(self, kind: BanKind) -> frozenset[str]:
        async with self._scope.op() as db:
            return frozenset(
                b.target for b in db.admin.bans.group("kind", kind) if b.lifted_at is None
            )


class MemoryFlagStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def set_flag(self, flag: FlagOverride) -> None:
        async with self._scope.op() as db:
            if flag.updated_by is not None:
                db.require_user(flag.updated_by)
            db.admin.flags.save(flag)

    async def clear_flag(self, name: str) -> bool:
        async with self._scope.op() as db:
            return db.admin.flags.delete(name) is not None

    async def list_flags(self) -> list[FlagOverride]:
        async with self._scope.op() as db:
            return sorted(db.admin.flags.rows(), key=lambda f: f.name)


class MemoryAuditStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        if entry.id is not None:
            raise ValueError("the store numbers audit entries: give id=None")
        async with self._scope.op() as db:
            stored = attrs.evolve(entry, id=next(db.admin.audit_ids))
            db.admin.audit.insert(stored)
            return stored

    async def list_audit(
        self,
        *,
        actor_id: str | None = None,
        action: AuditAction | None = None,
        target_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[AuditEntry]:
        async with self._scope.op() as db:
            rows = [
                e
                for e in db.admin.audit.rows()
                if (actor_id is None or e.actor_id == actor_id)
                and (action is None or e.action is action)
                and (target_id is None or e.target_id == target_id)
            ]
            return paginate(
                rows,
                lambda e: (micros(e.at), e.id or 0),
                (int, int),
                descending=True,
                cursor=cursor,
                limit=limit,
            )


class MemoryConnectionIndex:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def list_online_devices(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        async with self._scope.op() as db:
            return paginate(
                (d for d in db.devices.rows() if d.status is DeviceStatus.ONLINE),
                lambda d: (d.device_id,),
                (str,),
                descending=False,
                cursor=cursor,
                limit=limit,
            )
