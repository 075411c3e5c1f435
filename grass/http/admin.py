"""Operators' routes under /api/v1/admin (grass.services.admin): connections, bans, feature
flags, the audit log. Every route needs an admin session; every change is audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from grass.domain.admin import FLAG_NAME_PATTERN, AuditAction, AuditEntry, Ban, BanKind
from grass.domain.devices import DeviceType
from grass.domain.pages import Page
from grass.http import schema as s
from grass.http.api import Call, PageQuery, route
from grass.http.auth import ADMIN
from grass.http.network import DevicePath
from grass.services.admin import (
    AdminService,
    AlreadyBanned,
    BanNotFound,
    CannotBanAdmin,
    ConnectionNotFound,
    FlagNotFound,
    InvalidRange,
    UserNotFound,
)
from grass.services.flags import FlagSource, FlagState

TAG = "admin"
#: What a range is made of; whether it is one (and its host bits are zero) the service says.
RANGE_PATTERN = r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"


@attrs.frozen(kw_only=True)
class AdminConnection:
    """A live node connection, on whichever instance holds it (``last_seen``: its latest
    heartbeat as written, every few seconds)."""

    device_id: str
    user_id: str
    ip: str | None
    type: DeviceType
    version: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    instance: str


@attrs.frozen(kw_only=True)
class AdminBan:
    id: str
    kind: BanKind
    #: A CIDR range (kind ip_range) or a user id (kind user).
    target: str
    reason: str | None
    created_by: str | None
    created_at: dt.datetime
    lifted_at: dt.datetime | None


@attrs.frozen(kw_only=True)
class RangeBanRequest:
    """A CIDR range (``10.0.0.0/8``) or one address; host bits must be zero."""

    range: str = s.text(max_length=64, min_length=1, pattern=RANGE_PATTERN)
    reason: str | None = s.text(max_length=256, optional=True, default=None)


@attrs.frozen(kw_only=True)
class UserBanRequest:
    user_id: str = s.text(max_length=64, min_length=1)
    reason: str | None = s.text(max_length=256, optional=True, default=None)


@attrs.frozen(kw_only=True)
class BanQuery(PageQuery):
    kind: BanKind | None = None
    include_lifted: bool = False


@attrs.frozen(kw_only=True)
class AdminFlag:
    name: str
    enabled: bool
    source: FlagSource
    config_value: bool | None
    updated_by: str | None
    updated_at: dt.datetime | None


@attrs.frozen(kw_only=True)
class BanPath:
    ban_id: str = s.text(max_length=21, min_length=21, pattern=s.SHORT_ID_PATTERN)


@attrs.frozen(kw_only=True)
class FlagPath:
    name: str = s.text(max_length=64, min_length=1, pattern=FLAG_NAME_PATTERN)


@attrs.frozen(kw_only=True)
class FlagValue:
    enabled: bool


@attrs.frozen(kw_only=True)
class AuditQuery(PageQuery):
    actor_id: str | None = s.text(max_length=64, optional=True, default=None)
    action: AuditAction | None = None
    target_id: str | None = s.text(max_length=256, optional=True, default=None)


@attrs.frozen(kw_only=True)
class AuditLogEntry:
    id: int
    actor_id: str | None
    action: AuditAction
    target_type: str
    target_id: str
    details: dict[str, Any]
    ip: str | None
    at: dt.datetime


def _ban(b: Ban) -> AdminBan:
    return AdminBan(
        id=b.id,
        kind=b.kind,
        target=b.target,
        reason=b.reason,
        created_by=b.created_by,
        created_at=b.created_at,
        lifted_at=b.lifted_at,
    )


def _flag(v: FlagState) -> AdminFlag:
    return AdminFlag(
        name=v.name,
        enabled=v.enabled,
        source=v.source,
        config_value=v.config_value,
        updated_by=v.override.updated_by if v.override else None,
        updated_at=v.override.updated_at if v.override else None,
    )


def _entry(e: AuditEntry) -> AuditLogEntry:
    return AuditLogEntry(
        id=e.id or 0,
        actor_id=e.actor_id,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        details=dict(e.details),
        ip=e.ip,
        at=e.at,
    )


class AdminRoutes:
    """Connections, bans, feature flags and the audit log, for admins."""

    def __init__(self, admin: AdminService) -> None:
        self._admin = admin

    @route(
        "GET",
        "/api/v1/admin/connections",
        summary="Live node connections",
        description="Every instance's connections (online device rows confirmed by the "
        "presence map). Order: device id; a page may hold fewer items than the limit.",
        tag=TAG,
        auth=ADMIN,
        query=PageQuery,
        page_of=AdminConnection,
    )
    async def list_connections(self, call: Call) -> Page[AdminConnection]:
        page = await self._admin.list_connections(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(lambda c: AdminConnection(**attrs.asdict(c)))

    @route(
        "DELETE",
        "/api/v1/admin/connections/<device_id>",
        path_fields=DevicePath,
        summary="Kick a node",
        description="Closes the device's connection (code 4005) on whichever instance holds "
        "it. The node may connect again: ban its user or range to keep it out.",
        tag=TAG,
        auth=ADMIN,
        errors=(ConnectionNotFound,),
    )
    async def kick_connection(self, call: Call) -> None:
        await self._admin.kick(call.user_id, call.path["device_id"], ip=call.ip)

    @route(
        "GET",
        "/api/v1/admin/bans",
        summary="Bans",
        description="Active bans (with include_lifted, lifted ones too). Order: newest first.",
        tag=TAG,
        auth=ADMIN,
        query=BanQuery,
        page_of=AdminBan,
    )
    async def list_bans(self, call: Call) -> Page[AdminBan]:
        q = call.query
        page = await self._admin.list_bans(
            call.user_id,
            kind=q.kind,
            include_lifted=q.include_lifted,
            cursor=q.cursor,
            limit=q.limit,
        )
        return page.map(_ban)

    @route(
        "POST",
        "/api/v1/admin/bans/ip-ranges",
        summary="Ban an IP range",
        description="Nodes in the range are disconnected (code 4006) and refused at the "
        "upgrade (403 address_banned).",
        tag=TAG,
        auth=ADMIN,
        body=RangeBanRequest,
        response=AdminBan,
        status=201,
        errors=(AlreadyBanned, InvalidRange),
    )
    async def ban_ip_range(self, call: Call) -> AdminBan:
        ban = await self._admin.ban_range(
            call.user_id, call.body.range, reason=call.body.reason, ip=call.ip
        )
        return _ban(ban)

    @route(
        "POST",
        "/api/v1/admin/bans/users",
        summary="Ban a user",
        description="The user cannot log in (its sessions are revoked) or connect nodes; its "
        "nodes are disconnected (code 4006).",
        tag=TAG,
        auth=ADMIN,
        body=UserBanRequest,
        response=AdminBan,
        status=201,
        errors=(UserNotFound, AlreadyBanned, CannotBanAdmin),
    )
    async def ban_user(self, call: Call) -> AdminBan:
        ban = await self._admin.ban_user(
            call.user_id, call.body.user_id, reason=call.body.reason, ip=call.ip
        )
        return _ban(ban)

    @route(
        "POST",
        "/api/v1/admin/bans/<ban_id>/lift",
        path_fields=BanPath,
        summary="Lift a ban",
        description="A banned user becomes active again. The ban stays in the history.",
        tag=TAG,
        auth=ADMIN,
        response=AdminBan,
        errors=(BanNotFound,),
    )
    async def lift_ban(self, call: Call) -> AdminBan:
        return _ban(await self._admin.lift_ban(call.user_id, call.path["ban_id"], ip=call.ip))

    @route(
        "GET",
        "/api/v1/admin/flags",
        summary="Feature flags",
        description="Each flag's effective value, and whether it comes from the config or a "
        "runtime override. Order: name.",
        tag=TAG,
        auth=ADMIN,
        query=PageQuery,
        page_of=AdminFlag,
    )
    async def list_flags(self, call: Call) -> Page[AdminFlag]:
        page = await self._admin.list_flags(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(_flag)

    @route(
        "PUT",
        "/api/v1/admin/flags/<name>",
        path_fields=FlagPath,
        summary="Override a feature flag",
        description="Wins over the config on every instance, across restarts, until cleared.",
        tag=TAG,
        auth=ADMIN,
        body=FlagValue,
        response=AdminFlag,
    )
    async def set_flag(self, call: Call) -> AdminFlag:
        view = await self._admin.set_flag(
            call.user_id, call.path["name"], call.body.enabled, ip=call.ip
        )
        return _flag(view)

    @route(
        "DELETE",
        "/api/v1/admin/flags/<name>",
        path_fields=FlagPath,
        summary="Clear a feature-flag override",
        description="The config's value applies again.",
        tag=TAG,
        auth=ADMIN,
        errors=(FlagNotFound,),
    )
    async def clear_flag(self, call: Call) -> None:
        await self._admin.clear_flag(call.user_id, call.path["name"], ip=call.ip)

    @route(
        "GET",
        "/api/v1/admin/audit",
        summary="The audit log",
        description="Every admin action: who, what, which target, from where, when. "
        "Order: newest first.",
        tag=TAG,
        auth=ADMIN,
        query=AuditQuery,
        page_of=AuditLogEntry,
    )
    async def audit_log(self, call: Call) -> Page[AuditLogEntry]:
        q = call.query
        page = await self._admin.audit_log(
            call.user_id,
            by=q.actor_id,
            action=q.action,
            target_id=q.target_id,
            cursor=q.cursor,
            limit=q.limit,
        )
        return page.map(_entry)
