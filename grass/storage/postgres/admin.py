"""BanStore, FlagStore and AuditStore on PostgreSQL (the administration tables of 0001, with
the indexes of 0003). A ban row names its subject in ``user_id`` or ``network`` (cidr)."""

from __future__ import annotations

import datetime as dt

from grass.domain.admin import AuditAction, AuditEntry, Ban, BanKind, FlagOverride
from grass.domain.devices import Device
from grass.domain.pages import (
    DEFAULT_PAGE_SIZE,
    InvalidPage,
    Page,
    check_limit,
    decode_cursor,
    from_micros,
    micros,
)
from grass.ids import is_uuid
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.devices import _COLUMNS as DEVICE_COLUMNS
from grass.storage.postgres.devices import _device
from grass.storage.postgres.rows import after_time_text, page_of, require, row_count, text_or_none
from grass.storage.postgres.scope import Scope

__all__ = ["PgAuditStore", "PgBanStore", "PgConnectionIndex", "PgFlagStore"]

_BAN_COLUMNS = "id, user_id, network, reason, created_by, created_at, lifted_at"
_AUDIT_COLUMNS = "id, actor_id, action, target_type, target_id, details, ip, at"
# Bans of devices are in the table's design but not offered: every query leaves them out.
_SUBJECTS = "device_id IS NULL"


def _ban(row: Record) -> Ban:
    user_id = row["user_id"]
    return Ban(
        id=row["id"],
        kind=BanKind.USER if user_id is not None else BanKind.IP_RANGE,
        target=user_id if user_id is not None else str(row["network"]),
        reason=row["reason"] or None,
        created_by=row["created_by"],
        created_at=row["created_at"],
        lifted_at=row["lifted_at"],
    )


def _subject(kind: BanKind, target: str) -> tuple[str | None, str | None]:
    """(user_id, network) of a ban target."""
    return (target, None) if kind is BanKind.USER else (None, target)


def _flag(row: Record) -> FlagOverride:
    return FlagOverride(
        name=row["name"],
        enabled=row["enabled"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def _audit(row: Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        actor_id=row["actor_id"],
        action=AuditAction(row["action"]),
        target_type=row["target_type"],
        target_id=row["target_id"],
        details=row["details"],
        ip=text_or_none(row["ip"]),
        at=row["at"],
    )


class PgBanStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_ban(self, ban: Ban) -> None:
        user_id, network = _subject(ban.kind, ban.target)

        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO bans ({_BAN_COLUMNS})"
                " VALUES ($1, $2, $3::text::cidr, $4, $5, $6, $7)",
                ban.id,
                user_id,
                network,
                ban.reason or "",
                ban.created_by,
                ban.created_at,
                ban.lifted_at,
            )

        await self._scope.write(insert)

    async def get_ban(self, ban_id: str) -> Ban:
        async def fetch(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_BAN_COLUMNS} FROM bans WHERE id = $1::text AND {_SUBJECTS}", ban_id
            )

        return _ban(require(await self._scope.read_primary(fetch), "ban", ban_id))

    async def find_ban(self, kind: BanKind, target: str) -> Ban | None:
        user_id, network = _subject(kind, target)

        async def fetch(conn: Connection) -> Record | None:
            where = "user_id = $1::text" if user_id is not None else "network = $1::text::cidr"
            return await conn.fetchrow(
                f"SELECT {_BAN_COLUMNS} FROM bans WHERE {where} AND lifted_at IS NULL",
                user_id or network,
            )

        # The primary: a ban must bite at once, replica lag would let banned nodes back in.
        row = await self._scope.read_primary(fetch)
        return None if row is None else _ban(row)

    async def lift_ban(self, ban_id: str, at: dt.datetime) -> Ban:
        async def lift(conn: Connection) -> Ban:
            row = await conn.fetchrow(
                f"UPDATE bans SET lifted_at = $2 WHERE id = $1::text AND lifted_at IS NULL"
                f" AND {_SUBJECTS} RETURNING {_BAN_COLUMNS}",
                ban_id,
                at,
            )
            # Raised inside the write: a unit of work is doomed by it like by any failure.
            return _ban(require(row, "ban", ban_id))

        return await self._scope.write(lift)

    async def list_bans(
        self,
        *,
        kind: BanKind | None = None,
        include_lifted: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Ban]:
        before_at, before_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_BAN_COLUMNS} FROM bans WHERE {_SUBJECTS}"
                " AND ($1::text IS NULL OR ($1 = 'user') = (user_id IS NOT NULL))"
                " AND ($2::boolean OR lifted_at IS NULL)"
                ' AND ($3::timestamptz IS NULL OR (created_at, id COLLATE "C") < ($3, $4::text))'
                ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $5',
                None if kind is None else kind.value,
                include_lifted,
                before_at,
                before_id,
                limit + 1,
            )

        rows = await self._scope.read_primary(fetch)
        return page_of(rows, limit, _ban, lambda b: (micros(b.created_at), b.id))

    async def ban_targets(self, kind: BanKind) -> frozenset[str]:
        column = "user_id" if kind is BanKind.USER else "network"

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {column} AS target FROM bans"
                f" WHERE {column} IS NOT NULL AND lifted_at IS NULL"
            )

        return frozenset(str(row["target"]) for row in await self._scope.read_primary(fetch))


class PgFlagStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def set_flag(self, flag: FlagOverride) -> None:
        async def upsert(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO feature_flags (name, enabled, updated_by, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET"
                " enabled = excluded.enabled, updated_by = excluded.updated_by,"
                " updated_at = excluded.updated_at",
                flag.name,
                flag.enabled,
                flag.updated_by,
                flag.updated_at,
            )

        await self._scope.write(upsert)

    async def clear_flag(self, name: str) -> bool:
        async def delete(conn: Connection) -> str:
            return await conn.execute("DELETE FROM feature_flags WHERE name = $1::text", name)

        return row_count(await self._scope.write(delete)) > 0

    async def list_flags(self) -> list[FlagOverride]:
        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                "SELECT name, enabled, updated_by, updated_at FROM feature_flags"
                ' ORDER BY name COLLATE "C"'
            )

        return [_flag(row) for row in await self._scope.read_primary(fetch)]


class PgAuditStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        if entry.id is not None:
            raise ValueError("the store numbers audit entries: give id=None")

        async def insert(conn: Connection) -> Record:
            row = await conn.fetchrow(
                "INSERT INTO admin_audit_log"
                " (actor_id, action, target_type, target_id, details, ip, at)"
                f" VALUES ($1, $2, $3, $4, $5, $6::text::inet, $7) RETURNING {_AUDIT_COLUMNS}",
                entry.actor_id,
                entry.action.value,
                entry.target_type,
                entry.target_id,
                dict(entry.details),
                entry.ip,
                entry.at,
            )
            assert row is not None
            return row

        return _audit(await self._scope.write(insert))

    async def list_audit(
        self,
        *,
        actor_id: str | None = None,
        action: AuditAction | None = None,
        target_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[AuditEntry]:
        check_limit(limit)
        before_at: dt.datetime | None = None
        before_id: int | None = None
        if cursor is not None:
            when, number = decode_cursor(cursor, (int, int))
            if when is None or number is None:
                raise InvalidPage("malformed cursor")
            before_at, before_id = from_micros(int(when)), int(number)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_AUDIT_COLUMNS} FROM admin_audit_log"
                " WHERE ($1::text IS NULL OR actor_id = $1) AND ($2::text IS NULL OR action = $2)"
                " AND ($3::text IS NULL OR target_id = $3)"
                " AND ($4::timestamptz IS NULL OR (at, id) < ($4, $5::bigint))"
                " ORDER BY at DESC, id DESC LIMIT $6",
                actor_id,
                None if action is None else action.value,
                target_id,
                before_at,
                before_id,
                limit + 1,
            )

        rows = await self._scope.read_primary(fetch)
        return page_of(rows, limit, _audit, lambda e: (micros(e.at), e.id))


class PgConnectionIndex:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def list_online_devices(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Device]:
        check_limit(limit)
        after = None
        if cursor is not None:
            (after,) = decode_cursor(cursor, (str,))
            if not isinstance(after, str) or not is_uuid(after):
                raise InvalidPage("malformed cursor")

        async def fetch(conn: Connection) -> list[Record]:
            # uuid order is the order of their lower-case text, the memory backend's.
            return await conn.fetch(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE status = 'online'"
                " AND ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2",
                after,
                limit + 1,
            )

        rows = await self._scope.read_primary(fetch)
        return page_of(rows, limit, _device, lambda d: (d.device_id,))
