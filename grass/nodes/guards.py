"""The gateway checks of the network and admin features, installed as gateway hooks.

At the upgrade (an HTTP 403 with a JSON error, before any WebSocket exists): an address in a
banned range; for a v5 token, a banned or deleted user or a paused device (the token names
both). At AUTH
(a close): a banned user (4006), for v4 nodes that name their user only there.
"""

from __future__ import annotations

from grass.errors import Forbidden
from grass.nodes.control import ACCOUNT_DELETED, BANNED
from grass.nodes.registry import DevicePaused
from grass.nodes.token import TokenClaims
from grass.services.bans import BanGuard
from grass.storage.abc import DeviceStore, StorageNotFound, UserStore


class AddressBanned(Forbidden):
    code = "address_banned"
    ws_close_code = BANNED


class UserBanned(Forbidden):
    code = "user_banned"
    ws_close_code = BANNED


class UserGone(Forbidden):
    code = "unknown_user"
    ws_close_code = ACCOUNT_DELETED


class NetworkGuards:
    def __init__(self, bans: BanGuard, devices: DeviceStore, users: UserStore) -> None:
        self._bans = bans
        self._devices = devices
        self._users = users

    async def at_upgrade(self, ip: str, claims: TokenClaims | None) -> None:
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
