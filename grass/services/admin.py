"""Operators' use-cases: live connections, bans of IP ranges and users, feature flags, and the
audit log every one of these actions writes (in the same unit of work as the action).

Every method takes the acting user's id and checks the role itself (the HTTP layer checks it
too): a non-admin, or an admin no longer active, gets Forbidden. ``ip`` is the address the
request came from, recorded in the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from grass import logs
from grass.domain._checks import InvalidModel
from grass.domain.addresses import canonical
from grass.domain.admin import (
    AuditAction,
    AuditEntry,
    Ban,
    BanKind,
    FlagOverride,
    is_flag_name,
    parse_network,
)
from grass.domain.devices import DeviceType
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, check_limit, decode_cursor, encode_cursor
from grass.domain.users import Role, User, UserStatus
from grass.errors import (
    Conflict,
    Forbidden,
    NotFound,
    StorageConflict,
    StorageNotFound,
    ValidationFailed,
)
from grass.ids import is_short_id, short_id
from grass.services.bans import BanGuard
from grass.services.flags import FeatureFlags, FlagState
from grass.services.live import LiveEvents
from grass.services.network import NodeControl, utc_now
from grass.services.unsplit import store_and_announce
from grass.storage.abc import Storage, Stores
from grass.storage.shared_state import Presence

__all__ = ["AdminService", "Connection"]

log = logs.get(__name__)


class NotAdmin(Forbidden):
    """Administrators only: the pipeline's refusal of an admin route too (grass.http.auth)."""

    code = "admin_only"


class AlreadyBanned(Conflict):
    code = "already_banned"


class BanNotFound(NotFound):
    code = "ban_not_found"


class ConnectionNotFound(NotFound):
    code = "connection_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class FlagNotFound(NotFound):
    code = "flag_override_not_found"


class CannotBanAdmin(Conflict):
    code = "cannot_ban_admin"


class InvalidRange(ValidationFailed):
    """Not a CIDR range or an address, or a range with host bits set (``10.0.0.1/8``)."""

    code = "invalid_range"


@attrs.frozen(kw_only=True)
class Connection:
    device_id: str
    user_id: str
    ip: str | None
    type: DeviceType
    version: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    #: The instance holding it, from the presence map.
    instance: str


class AdminService:
    def __init__(
        self,
        storage: Storage,
        control: NodeControl,
        presence: Presence,
        bans: BanGuard,
        flags: FeatureFlags,
        events: LiveEvents,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._storage = storage
        self._events = events
        self._control = control
        self._presence = presence
        self._bans = bans
        self._flags = flags
        self._clock = clock

    async def require_admin(self, actor_id: str) -> User:
        try:
            actor = await self._storage.users.get_user(actor_id)
        except StorageNotFound:
            raise NotAdmin("administrators only") from None
        if actor.role is not Role.ADMIN or actor.status is not UserStatus.ACTIVE:
            raise NotAdmin("administrators only")
        return actor

    # -- connections --------------------------------------------------------------------------

    async def list_connections(
        self, actor_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[Connection]:
        """Node connections on every instance. Order: device id.

        The device rows say which devices are online (every instance's flusher writes them);
        the presence map confirms each and names its instance. A row the map does not confirm
        (an instance that died before marking its devices offline) is left out, so a page may
        hold fewer than ``limit`` items while ``next_cursor`` still leads on.
        """
        await self.require_admin(actor_id)
        page = await self._storage.connections.list_online_devices(cursor=cursor, limit=limit)
        where = await self._presence.lookup([d.device_id for d in page.items])
        items = tuple(
            Connection(
                device_id=d.device_id,
                user_id=d.user_id,
                ip=d.ip,
                type=d.type,
                version=d.version,
                first_seen=d.first_seen,
                last_seen=d.last_seen,
                instance=where[d.device_id],
            )
            for d in page.items
            if d.device_id in where
        )
        return Page(items, page.next_cursor)

    async def kick(self, actor_id: str, device_id: str, *, ip: str | None = None) -> None:
        """Disconnect a device wherever it is connected (it may connect again)."""
        await self.require_admin(actor_id)
        device = await self._storage.devices.find_device(device_id)
        live = bool(await self._presence.lookup([device_id]))
        if device is None and not live:
            raise ConnectionNotFound("no such device", details={"device_id": device_id})
        await self._audit(
            self._storage,
            actor_id,
            AuditAction.CONNECTION_KICK,
            "device",
            device_id,
            {"user_id": device.user_id if device else None},
            ip,
        )
        await self._control.kick(device_id)

    # -- bans ---------------------------------------------------------------------------------

    async def list_bans(
        self,
        actor_id: str,
        *,
        kind: BanKind | None = None,
        include_lifted: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Ban]:
        await self.require_admin(actor_id)
        return await self._storage.bans.list_bans(
            kind=kind, include_lifted=include_lifted, cursor=cursor, limit=limit
        )

    async def ban_range(
        self, actor_id: str, network: str, *, reason: str | None = None, ip: str | None = None
    ) -> Ban:
        """Ban a CIDR range (or one address): its nodes are disconnected and refused."""
        await self.require_admin(actor_id)
        try:
            target = str(parse_network(network, "range"))
        except InvalidModel as exc:
            problem = exc.details.get("problem", exc.message)
            raise InvalidRange(exc.message, details={"fields": {"range": problem}}) from None
        ban = self._new_ban(BanKind.IP_RANGE, target, reason, actor_id)
        with store_and_announce():
            try:
                async with self._storage.transaction() as tx:
                    await tx.bans.add_ban(ban)
                    await self._audit(
                        tx, actor_id, AuditAction.IP_BAN, "ip_range", target, _why(reason), ip
                    )
            except StorageConflict:
                raise AlreadyBanned(
                    f"{target} is already banned", details={"range": target}
                ) from None
            await self._bans_changed()
            await self._control.ban_range(target)
        return ban

    async def ban_user(
        self, actor_id: str, user_id: str, *, reason: str | None = None, ip: str | None = None
    ) -> Ban:
        """Ban a user: it cannot log in (status banned, sessions revoked) or connect nodes, and
        its nodes are disconnected."""
        await self.require_admin(actor_id)
        if not is_short_id(user_id):
            raise UserNotFound("no such user", details={"user_id": user_id})
        ban = self._new_ban(BanKind.USER, user_id, reason, actor_id)
        with store_and_announce():
            revoked = await self._store_user_ban(ban, actor_id, reason, ip)
            await self._bans_changed()
            await self._control.ban_user(user_id)
            # Its live sockets close: those of sessions, and those of API keys too.
            await self._events.sessions_revoked(user_id, revoked)
            await self._events.account_closed(user_id)
        return ban

    async def _store_user_ban(
        self, ban: Ban, actor_id: str, reason: str | None, ip: str | None
    ) -> tuple[str, ...]:
        """Store the ban, the user's status and its revoked sessions (whose hashes it returns)."""
        user_id = ban.target
        try:
            async with self._storage.transaction() as tx:
                try:
                    user = await tx.users.get_user(user_id)
                except StorageNotFound:
                    raise UserNotFound("no such user", details={"user_id": user_id}) from None
                if user.role is Role.ADMIN:
                    raise CannotBanAdmin("an administrator cannot be banned; demote it first")
                await tx.bans.add_ban(ban)
                await tx.users.update_user(attrs.evolve(user, status=UserStatus.BANNED))
                revoked = await tx.users.revoke_user_sessions(user_id, self._clock())
                await self._audit(
                    tx, actor_id, AuditAction.USER_BAN, "user", user_id, _why(reason), ip
                )
        except StorageConflict:
            raise AlreadyBanned(
                "this user is already banned", details={"user_id": user_id}
            ) from None
        return revoked

    async def lift_ban(self, actor_id: str, ban_id: str, *, ip: str | None = None) -> Ban:
        """Unban: a banned user becomes active again (it logs in anew)."""
        await self.require_admin(actor_id)
        if not is_short_id(ban_id):
            raise BanNotFound("no active ban with this id", details={"ban_id": ban_id})
        try:
            async with self._storage.transaction() as tx:
                ban = await tx.bans.lift_ban(ban_id, self._clock())
                if ban.kind is BanKind.USER:
                    user = await tx.users.get_user(ban.target)
                    if user.status is UserStatus.BANNED:
                        await tx.users.update_user(attrs.evolve(user, status=UserStatus.ACTIVE))
                action = (
                    AuditAction.USER_UNBAN if ban.kind is BanKind.USER else AuditAction.IP_UNBAN
                )
                await self._audit(
                    tx, actor_id, action, ban.kind.value, ban.target, {"ban_id": ban_id}, ip
                )
        except StorageNotFound:
            raise BanNotFound("no active ban with this id", details={"ban_id": ban_id}) from None
        await self._bans_changed()
        return ban

    # -- feature flags ------------------------------------------------------------------------

    async def list_flags(
        self, actor_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[FlagState]:
        """Every flag the config names or an override sets. Order: name."""
        await self.require_admin(actor_id)
        check_limit(limit)
        after = None if cursor is None else str(decode_cursor(cursor, (str,))[0])
        await self._flags.reload()
        states = [v for v in self._flags.states() if after is None or v.name > after]
        page = states[:limit]
        more = len(states) > limit
        return Page(tuple(page), encode_cursor([page[-1].name]) if more else None)

    async def set_flag(
        self, actor_id: str, name: str, enabled: bool, *, ip: str | None = None
    ) -> FlagState:
        await self.require_admin(actor_id)
        flag = FlagOverride(
            name=name, enabled=enabled, updated_by=actor_id, updated_at=self._clock()
        )
        async with self._storage.transaction() as tx:
            await tx.flags.set_flag(flag)
            await self._audit(
                tx, actor_id, AuditAction.FLAG_SET, "flag", name, {"enabled": enabled}, ip
            )
        await self._flags_changed()
        return next(v for v in self._flags.states() if v.name == name)

    async def clear_flag(self, actor_id: str, name: str, *, ip: str | None = None) -> None:
        """Drop an override: the config's value applies again. NotFound when there is none."""
        await self.require_admin(actor_id)
        if not is_flag_name(name):
            raise FlagNotFound("no override of this flag", details={"name": name})
        async with self._storage.transaction() as tx:
            if not await tx.flags.clear_flag(name):
                raise FlagNotFound("no override of this flag", details={"name": name})
            await self._audit(tx, actor_id, AuditAction.FLAG_CLEAR, "flag", name, {}, ip)
        await self._flags_changed()

    # -- audit log ----------------------------------------------------------------------------

    async def audit_log(
        self,
        actor_id: str,
        *,
        by: str | None = None,
        action: AuditAction | None = None,
        target_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[AuditEntry]:
        await self.require_admin(actor_id)
        return await self._storage.audit.list_audit(
            actor_id=by, action=action, target_id=target_id, cursor=cursor, limit=limit
        )

    # -- helpers ------------------------------------------------------------------------------

    def _new_ban(self, kind: BanKind, target: str, reason: str | None, actor_id: str) -> Ban:
        cleaned = reason.strip() if reason is not None else None
        return Ban(
            id=short_id(),
            kind=kind,
            target=target,
            reason=cleaned or None,
            created_by=actor_id,
            created_at=self._clock(),
        )

    async def _audit(
        self,
        stores: Stores,
        actor_id: str,
        action: AuditAction,
        target_type: str,
        target_id: str,
        details: Mapping[str, Any],
        ip: str | None,
    ) -> None:
        entry = AuditEntry(
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=dict(details),
            ip=_address(ip),
            at=self._clock(),
        )
        await stores.audit.add_audit(entry)

    async def _bans_changed(self) -> None:
        # This instance at once (the caller's next request must see it), then every instance.
        await self._bans.reload()
        await self._control.bans_changed()

    async def _flags_changed(self) -> None:
        await self._flags.reload()
        await self._control.flags_changed()


def _address(ip: str | None) -> str | None:
    """The canonical address, or None for what is not one (a test client's placeholder)."""
    return None if ip is None else canonical(ip)


def _why(reason: str | None) -> dict[str, Any]:
    return {"reason": reason.strip() or None} if reason is not None else {}
