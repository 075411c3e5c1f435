"""A user's network: devices, IPs and a summary (Grass's dashboard), and the owner's actions on
a device (rename, pause and resume sharing, remove).

Online means "a live session holds it now", from the presence map shared by every instance;
a paused device is shown paused whatever its socket does. "Today" is the user's calendar day
in their profile's time zone. Another user's device is simply not found (404), never 403.

Acting on a live node goes through :class:`NodeControl`, which reaches the instance holding
the device (presence plus a pub/sub command channel per instance): a paused node is closed
with the paused code, a removed one is disconnected and forgotten.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from grass.domain import scoring
from grass.domain.devices import Device, DeviceType
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, check_limit, decode_cursor, encode_cursor
from grass.domain.periods import Period, period_start
from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.uptime import UptimeStats
from grass.errors import NotFound, StorageNotFound
from grass.services.live import LiveEvents
from grass.services.unsplit import store_and_announce
from grass.storage.abc import Storage
from grass.storage.shared_state import Presence

__all__ = [
    "DeviceNotFound",
    "DeviceState",
    "DeviceSummary",
    "IpSummary",
    "NetworkService",
    "NetworkSummary",
    "NodeControl",
]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NodeControl(Protocol):
    """What the services may ask of live node connections, wherever they are connected."""

    async def pause(self, device_id: str) -> None:
        """Close the device's live session with the paused code (if it has one)."""
        ...

    async def remove(self, device_id: str) -> None:
        """Disconnect the device and drop what its session would still write."""
        ...

    async def kick(self, device_id: str) -> None: ...

    async def ban_user(self, user_id: str) -> None:
        """Disconnect every node of the user, on every instance."""
        ...

    async def disconnect_user(self, user_id: str) -> None:
        """The user's account is deleted: disconnect its nodes on every instance and drop
        what their sessions would still write."""
        ...

    async def ban_range(self, network: str) -> None:
        """Disconnect every node whose address is in ``network``, on every instance."""
        ...

    async def bans_changed(self) -> None:
        """Every instance reloads its ban list."""
        ...

    async def flags_changed(self) -> None:
        """Every instance reloads its feature-flag overrides."""
        ...


class DeviceNotFound(NotFound):
    code = "device_not_found"


class DeviceState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    PAUSED = "paused"


@attrs.frozen(kw_only=True)
class DeviceSummary:
    device_id: str
    name: str | None
    type: DeviceType
    version: str | None
    ip: str | None
    country: str | None
    status: DeviceState
    uptime_today_seconds: int
    uptime_total_seconds: int
    score: NetworkScore | None
    #: Micro-points this device earned, all time.
    points: int
    first_seen: dt.datetime
    last_connected: dt.datetime


@attrs.frozen(kw_only=True)
class IpSummary:
    ip: str
    devices: tuple[str, ...]
    devices_online: int
    uptime_today_seconds: int
    uptime_total_seconds: int
    #: Its devices' scores (components likewise) weighted by their uptime in the score window
    #: (grass.domain.scoring.ip_score); None when none is scored yet.
    score: int | None
    score_components: ScoreComponents | None
    points: int


@attrs.frozen(kw_only=True)
class NetworkSummary:
    devices_total: int
    devices_online: int
    devices_paused: int
    ips: int
    uptime_today_seconds: int
    uptime_total_seconds: int
    points: int


class NetworkService:
    def __init__(
        self,
        storage: Storage,
        presence: Presence,
        control: NodeControl,
        clock: Callable[[], dt.datetime] = utc_now,
        *,
        events: LiveEvents | None = None,
        score_window: Callable[[], dt.timedelta] = lambda: scoring.DEFAULT.window,
    ) -> None:
        self._storage = storage
        self._presence = presence
        self._control = control
        self._clock = clock
        #: The scores' trailing window (``score.window``): an IP's score weights its devices'
        #: scores by their uptime in it.
        self._score_window = score_window
        #: Where the owner's other dashboards learn of a change (None: nowhere).
        self._events = events

    # -- reads ------------------------------------------------------------------------------

    async def list_devices(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[DeviceSummary]:
        """Order: first seen, then id (a device keeps its place as others join)."""
        page = await self._storage.devices.list_devices(user_id, cursor=cursor, limit=limit)
        views = await self._summaries(user_id, page.items)
        return Page(tuple(views), page.next_cursor)

    async def get_device(self, user_id: str, device_id: str) -> DeviceSummary:
        (view,) = await self._summaries(user_id, [await self._owned(user_id, device_id)])
        return view

    async def list_ips(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[IpSummary]:
        """The user's current IPs with their devices. Order: the IP's text."""
        check_limit(limit)
        after = None if cursor is None else str(decode_cursor(cursor, (str,))[0])
        ips = await self._storage.devices.user_ips(user_id)
        chosen = sorted(ip for ip in ips if after is None or ip > after)
        more = len(chosen) > limit
        chosen = chosen[:limit]
        if not chosen:
            return Page((), None)
        today = await self._today(user_id)
        uptime = self._storage.uptime
        total = await uptime.uptime_by_ip(user_id=user_id)
        today_stats = await uptime.uptime_by_ip(user_id=user_id, since=today)
        points = await self._storage.earnings.earnings_by_ip(user_id)
        scores = {d.device_id: d.score for d in await self._all_devices(user_id) if d.score}
        # The IP's score weights its devices by their uptime in the score's window.
        recent = await uptime.uptime_by_device(user_id, since=self._clock() - self._score_window())
        online = await self._presence.lookup([d for ip in chosen for d in ips[ip]])
        views = []
        for ip in chosen:
            members = ips[ip]
            value, components = _ip_score(
                [(scores[d], recent.get(d, UptimeStats()).seconds) for d in members if d in scores],
                self._clock(),
            )
            views.append(
                IpSummary(
                    ip=ip,
                    devices=members,
                    devices_online=sum(1 for d in members if d in online),
                    uptime_today_seconds=today_stats.get(ip, UptimeStats()).seconds,
                    uptime_total_seconds=total.get(ip, UptimeStats()).seconds,
                    score=value,
                    score_components=components,
                    points=points.get(ip, 0),
                )
            )
        return Page(tuple(views), encode_cursor([chosen[-1]]) if more else None)

    async def summary(self, user_id: str) -> NetworkSummary:
        devices = await self._all_devices(user_id)
        online = await self._presence.lookup([d.device_id for d in devices])
        today = await self._today(user_id)
        uptime = self._storage.uptime
        totals = await self._storage.earnings.earnings_by_device(user_id)
        return NetworkSummary(
            devices_total=len(devices),
            devices_online=sum(1 for d in devices if d.device_id in online and not d.paused),
            devices_paused=sum(1 for d in devices if d.paused),
            ips=len({d.ip for d in devices if d.ip is not None}),
            uptime_today_seconds=(await uptime.uptime_stats(user_id=user_id, since=today)).seconds,
            uptime_total_seconds=(await uptime.uptime_stats(user_id=user_id)).seconds,
            points=sum(totals.values()),
        )

    # -- the owner's actions ----------------------------------------------------------------

    async def rename(self, user_id: str, device_id: str, name: str | None) -> DeviceSummary:
        """A blank name goes back to the default (None)."""
        device = await self._owned(user_id, device_id)
        cleaned = name.strip() if name is not None else None
        renamed = attrs.evolve(device, name=cleaned or None)  # validates (1-64 characters)
        await self._storage.devices.set_device_name(device_id, renamed.name)
        await self._changed(user_id, device_id, "renamed")
        return await self.get_device(user_id, device_id)

    async def pause(self, user_id: str, device_id: str) -> DeviceSummary:
        """Stop sharing: stored first (so a reconnect is refused), then the node is closed;
        a cancellation cannot separate the two."""
        device = await self._owned(user_id, device_id)
        with store_and_announce():
            if not device.paused:
                await self._storage.devices.set_device_paused(device_id, True)
            await self._control.pause(device_id)
        await self._changed(user_id, device_id, "paused")
        return await self.get_device(user_id, device_id)

    async def resume(self, user_id: str, device_id: str) -> DeviceSummary:
        """Share again: the node is let back in on its next connection."""
        device = await self._owned(user_id, device_id)
        if device.paused:
            await self._storage.devices.set_device_paused(device_id, False)
        await self._changed(user_id, device_id, "resumed")
        return await self.get_device(user_id, device_id)

    async def remove(self, user_id: str, device_id: str) -> None:
        """Forget the device (its past uptime and earnings stay) and disconnect it. A node
        that is still installed may connect again later, as a new device of its owner."""
        await self._owned(user_id, device_id)
        # Disconnect first: the session's last flush would otherwise write the row back.
        # A cancellation cannot leave the device disconnected but stored (or the reverse).
        with store_and_announce():
            await self._control.remove(device_id)
            try:
                await self._storage.devices.delete_device(device_id)
            except StorageNotFound:
                raise DeviceNotFound("device not found", details={"device_id": device_id}) from None
        await self._changed(user_id, device_id, "removed")

    # -- helpers ----------------------------------------------------------------------------

    async def _changed(self, user_id: str, device_id: str, change: str) -> None:
        if self._events is not None:
            await self._events.device(user_id, device_id, change)

    async def _owned(self, user_id: str, device_id: str) -> Device:
        device = await self._storage.devices.find_device(device_id)
        if device is None or device.user_id != user_id:
            raise DeviceNotFound("device not found", details={"device_id": device_id})
        return device

    async def _all_devices(self, user_id: str) -> list[Device]:
        devices: list[Device] = []
        cursor = None
        while True:
            page = await self._storage.devices.list_devices(user_id, cursor=cursor, limit=1000)
            devices.extend(page.items)
            if (cursor := page.next_cursor) is None:
                return devices

    async def _today(self, user_id: str) -> dt.datetime:
        try:
            tz = (await self._storage.users.get_user(user_id)).profile.timezone
        except StorageNotFound:
            tz = "UTC"
        return period_start(self._clock(), Period.DAY, tz)

    async def _summaries(self, user_id: str, devices: Sequence[Device]) -> list[DeviceSummary]:
        if not devices:
            return []
        today = await self._today(user_id)
        uptime = self._storage.uptime
        total = await uptime.uptime_by_device(user_id)
        today_stats = await uptime.uptime_by_device(user_id, since=today)
        points = await self._storage.earnings.earnings_by_device(user_id)
        online = await self._presence.lookup([d.device_id for d in devices])
        return [
            DeviceSummary(
                device_id=d.device_id,
                name=d.name,
                type=d.type,
                version=d.version,
                ip=d.ip,
                country=d.country,
                status=DeviceState.PAUSED
                if d.paused
                else DeviceState.ONLINE
                if d.device_id in online
                else DeviceState.OFFLINE,
                uptime_today_seconds=today_stats.get(d.device_id, UptimeStats()).seconds,
                uptime_total_seconds=total.get(d.device_id, UptimeStats()).seconds,
                score=d.score,
                points=points.get(d.device_id, 0),
                first_seen=d.first_seen,
                last_connected=d.last_seen,
            )
            for d in devices
        ]


def _ip_score(
    scores: Sequence[tuple[NetworkScore, int]], at: dt.datetime
) -> tuple[int | None, ScoreComponents | None]:
    if not scores:
        return None, None
    score = scoring.ip_score(scores, at)
    return score.value, score.components
