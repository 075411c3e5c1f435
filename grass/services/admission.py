"""Whether a node may connect and authenticate: the rules over configuration and stored state.

The node gateway (grass.nodes.gateway) asks this service at each step:

- at the upgrade request: the Origin (:meth:`NodeAdmission.check_origin`), and, installed as
  gateway hooks by grass.wiring.cluster, :meth:`BanChecks.at_upgrade`: an address in a banned
  range; for a v5 token, a banned or deleted user or a paused device (the token names both);
- at AUTH: who the node is (:meth:`NodeAdmission.identify`: a node key, a revoked one being
  unknown; the check-in token's claims; with legacy auth a bare user id), its bans
  (:meth:`BanChecks.at_auth`, for v4 nodes that name their user only there), then its stored
  device (:meth:`NodeAdmission.check_device`: owned by another user, paused) and the counts the
  device caps need.

What only the live connections decide stays with the gateway's registry (grass.nodes.registry):
connections per IP, a device connected here under another user, the caps (they add the devices
connected here that storage does not count yet to the stored counts read here), the network
score, and the revocations that reach an AUTH in flight. The socket-level caps (descriptors,
pending upgrades per address) are grass.websocket.admission's.

Origin policy: ``chrome-extension://<id>`` is allowed when ``node.allowed_extension_ids`` is
empty or lists the id; no Origin (desktop clients) is allowed; any other origin is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

import attrs

from grass.config import Config
from grass.domain.bearer import is_node_key
from grass.domain.devices import Device
from grass.errors import Forbidden, StorageNotFound, Unauthenticated
from grass.services.bans import BanGuard
from grass.services.node_keys import NodeIdentity, identify_node
from grass.storage.devices import DeviceStore
from grass.storage.node_keys import NodeKeyStore
from grass.storage.users import UserStore

#: Close codes of refusals decided here (docs/protocol.md); the nodes' live sessions are closed
#: with the same codes when their owner pauses them, or their user is banned or deleted.
PAUSED = 4001
BANNED = 4006
ACCOUNT_DELETED = 4007


class OriginRefused(Forbidden):
    code = "origin_refused"
    ws_close_code = 1008


class ClaimsMismatch(Unauthenticated):
    code = "token_claims_mismatch"
    ws_close_code = 1008


class DevicePaused(Forbidden):
    code = "device_paused"
    ws_close_code = PAUSED


class DeviceOwnedElsewhere(Forbidden):
    code = "device_owned_by_another_user"
    ws_close_code = 1008


class AddressBanned(Forbidden):
    code = "address_banned"
    ws_close_code = BANNED


class UserBanned(Forbidden):
    code = "user_banned"
    ws_close_code = BANNED


class UserGone(Forbidden):
    code = "unknown_user"
    ws_close_code = ACCOUNT_DELETED


class AdmissionStores(Protocol):
    @property
    def users(self) -> UserStore: ...
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def node_keys(self) -> NodeKeyStore: ...


class Claims(Protocol):
    """What a v5 check-in token says of its node (grass.nodes.token.TokenClaims)."""

    @property
    def user_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...


@attrs.frozen
class StoredDevice:
    """An authenticating node's device as storage knows it, and its user's counts."""

    #: The stored row (None: a new device id).
    device: Device | None
    #: The user's devices seen within ``limits.device_active_window``.
    recent: int
    #: Whether this device is one of them.
    active: bool
    #: The user's stored devices, read for a new device id only (None when it is stored).
    stored: int | None


def origin_allowed(origin: str | None, allowed_extension_ids: tuple[str, ...]) -> bool:
    if origin is None:
        return True
    prefix = "chrome-extension://"
    if not origin.startswith(prefix):
        return False
    extension_id = origin[len(prefix) :].rstrip("/")
    return bool(extension_id) and (
        not allowed_extension_ids or extension_id in allowed_extension_ids
    )


class NodeAdmission:
    """The checks every node goes through (bans are :class:`BanChecks`, installed beside)."""

    def __init__(
        self, stores: AdmissionStores, config: Callable[[], Config], clock: Callable[[], float]
    ) -> None:
        self._stores = stores
        self._config = config
        self._clock = clock

    def check_origin(self, origin: str | None) -> None:
        if not origin_allowed(origin, self._config().node.allowed_extension_ids):
            raise OriginRefused("this origin may not connect")

    async def identify(
        self, credential: str, device_id: str, claims: Claims | None
    ) -> NodeIdentity:
        """Who the AUTH answer's ``user_id`` names: a node key's user (checked against the
        token's claims, if any), the token's own user, or with legacy auth a bare user id."""
        if claims is None:
            legacy = self._config().node.allow_legacy_auth
            return await identify_node(self._stores, credential, allow_legacy=legacy)
        if is_node_key(credential):
            identity = await identify_node(self._stores, credential, allow_legacy=False)
        else:
            # The token is the proof: the check-in asked for a node key (or legacy auth).
            identity = NodeIdentity(credential)
        if identity.user_id != claims.user_id or device_id != claims.device_id:
            raise ClaimsMismatch("the AUTH answer does not match the check-in token")
        return identity

    async def check_device(self, user_id: str, device_id: str) -> StoredDevice:
        """Refuse a stored device of another user, or a paused one; read the counts of the
        user's devices that the device caps need.

        The caps count the user's active devices (seen within ``limits.device_active_window``:
        every instance's flusher writes ``last_seen``), not every device ever stored, so
        devices that came once and left do not hold the user's slots for good."""
        devices = self._stores.devices
        device = await devices.find_device(device_id)
        if device is not None:
            if device.user_id != user_id:
                raise DeviceOwnedElsewhere("this device belongs to another user")
            if device.paused:
                raise DevicePaused("this device is paused by its owner")
        window = self._config().limits.device_active_window
        since = dt.datetime.fromtimestamp(self._clock() - window, dt.UTC)
        recent = await devices.count_recent_devices(user_id, seen_since=since)
        active = device is not None and device.last_seen >= since
        # A new device id also needs room among the user's stored devices (their count is
        # read only then: a device already stored reconnects without it).
        stored = None if device is not None else await devices.count_devices(user_id)
        return StoredDevice(device, recent, active, stored)


class BanChecks:
    """The bans, and for a v5 token a deleted user or a paused device: installed as gateway
    hooks by grass.wiring.cluster (the bans are loaded and reloaded there)."""

    def __init__(self, bans: BanGuard, devices: DeviceStore, users: UserStore) -> None:
        self._bans = bans
        self._devices = devices
        self._users = users

    async def at_upgrade(self, ip: str, claims: Claims | None) -> None:
        if (network := self._bans.banned_range(ip)) is not None:
            raise AddressBanned("this address range is banned", details={"range": network})
        if claims is None:
            return
        if self._bans.user_banned(claims.user_id):
            raise UserBanned("this user is banned")
        try:
            # A check-in token outlives the account it was issued to, by up to its TTL.
            await self._users.get_user(claims.user_id)
        except StorageNotFound:
            raise UserGone("this account was deleted") from None
        device = await self._devices.find_device(claims.device_id)
        if device is not None and device.paused and device.user_id == claims.user_id:
            raise DevicePaused("this device is paused by its owner")

    async def at_auth(self, user_id: str, device_id: str, ip: str) -> None:
        if self._bans.user_banned(user_id):
            raise UserBanned("this user is banned")
        if (network := self._bans.banned_range(ip)) is not None:
            raise AddressBanned("this address range is banned", details={"range": network})
