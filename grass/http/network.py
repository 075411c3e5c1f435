"""Routes of a user's network: devices, IPs, summary (grass.services.network)."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.devices import DeviceType
from grass.domain.pages import Page
from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.users import ApiScope
from grass.http import schema as s
from grass.http.api import Call, PageQuery, route
from grass.http.auth import USER, user_or_key
from grass.services.network import (
    DeviceNotFound,
    DeviceState,
    DeviceSummary,
    IpSummary,
    NetworkService,
    NetworkSummary,
)

#: The summary is polled by every open dashboard: a few seconds of staleness are fine.
SUMMARY_CACHE = "private, max-age=5"

READ = user_or_key(ApiScope.DEVICES_READ, ApiScope.STATS_READ)


@attrs.frozen(kw_only=True)
class ScoreParts:
    """What the network score is made of (0-100 each)."""

    availability: int
    stability: int
    latency: int
    ip_quality: int


@attrs.frozen(kw_only=True)
class DeviceScore:
    value: int
    components: ScoreParts
    computed_at: dt.datetime


@attrs.frozen(kw_only=True)
class DeviceView:
    """One of my devices. ``points`` are micro-points (1 point = 1 000 000)."""

    device_id: str
    name: str | None
    type: DeviceType
    version: str | None
    ip: str | None
    country: str | None
    status: DeviceState
    uptime_today_seconds: int
    uptime_total_seconds: int
    score: DeviceScore | None
    points: int
    first_seen: dt.datetime
    last_connected: dt.datetime


@attrs.frozen(kw_only=True)
class IpView:
    """One of my IPs (Grass's active-IPs view); its score is the mean of its devices'."""

    ip: str
    devices: list[str]
    devices_online: int
    uptime_today_seconds: int
    uptime_total_seconds: int
    score: int | None
    score_components: ScoreParts | None
    points: int


@attrs.frozen(kw_only=True)
class NetworkTotals:
    devices_total: int
    devices_online: int
    devices_paused: int
    ips: int
    uptime_today_seconds: int
    uptime_total_seconds: int
    points: int


@attrs.frozen(kw_only=True)
class DevicePath:
    """A device id is the node's browser id: a lower-case UUID."""

    device_id: str = s.text(max_length=36, min_length=36, pattern=s.UUID_PATTERN)


@attrs.frozen(kw_only=True)
class DeviceRename:
    """A new name; null or blank goes back to the default name."""

    name: str | None = s.text(max_length=64, optional=True)


def _parts(c: ScoreComponents) -> ScoreParts:
    return ScoreParts(
        availability=c.availability,
        stability=c.stability,
        latency=c.latency,
        ip_quality=c.ip_quality,
    )


def _score(score: NetworkScore | None) -> DeviceScore | None:
    if score is None:
        return None
    return DeviceScore(
        value=score.value, components=_parts(score.components), computed_at=score.computed_at
    )


def device_out(v: DeviceSummary) -> DeviceView:
    return DeviceView(
        device_id=v.device_id,
        name=v.name,
        type=v.type,
        version=v.version,
        ip=v.ip,
        country=v.country,
        status=v.status,
        uptime_today_seconds=v.uptime_today_seconds,
        uptime_total_seconds=v.uptime_total_seconds,
        score=_score(v.score),
        points=v.points,
        first_seen=v.first_seen,
        last_connected=v.last_connected,
    )


def _ip_out(v: IpSummary) -> IpView:
    return IpView(
        ip=v.ip,
        devices=list(v.devices),
        devices_online=v.devices_online,
        uptime_today_seconds=v.uptime_today_seconds,
        uptime_total_seconds=v.uptime_total_seconds,
        score=v.score,
        score_components=None if v.score_components is None else _parts(v.score_components),
        points=v.points,
    )


def _totals(v: NetworkSummary) -> NetworkTotals:
    return NetworkTotals(**attrs.asdict(v))


class NetworkRoutes:
    """A user's devices, IPs and network summary (grass.services.network)."""

    def __init__(self, network: NetworkService) -> None:
        self._network = network

    @route(
        "GET",
        "/api/v1/devices",
        summary="My devices",
        description="Status, uptime today (in my time zone) and in total, score with its "
        "components, points and last connection of each device. Order: first seen.",
        tag="network",
        auth=READ,
        query=PageQuery,
        page_of=DeviceView,
    )
    async def list_devices(self, call: Call) -> Page[DeviceView]:
        page = await self._network.list_devices(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(device_out)

    @route(
        "GET",
        "/api/v1/devices/<device_id>",
        path_fields=DevicePath,
        summary="One of my devices",
        tag="network",
        auth=READ,
        response=DeviceView,
        errors=(DeviceNotFound,),
    )
    async def get_device(self, call: Call) -> DeviceView:
        return device_out(await self._network.get_device(call.user_id, call.path["device_id"]))

    @route(
        "PATCH",
        "/api/v1/devices/<device_id>",
        path_fields=DevicePath,
        summary="Rename a device",
        tag="network",
        auth=USER,
        body=DeviceRename,
        response=DeviceView,
        errors=(DeviceNotFound,),
    )
    async def rename_device(self, call: Call) -> DeviceView:
        view = await self._network.rename(call.user_id, call.path["device_id"], call.body.name)
        return device_out(view)

    @route(
        "POST",
        "/api/v1/devices/<device_id>/pause",
        path_fields=DevicePath,
        summary="Pause sharing on a device",
        description="The node is disconnected (close code 4001), refused while paused, and "
        "earns nothing.",
        tag="network",
        auth=USER,
        response=DeviceView,
        errors=(DeviceNotFound,),
    )
    async def pause_device(self, call: Call) -> DeviceView:
        return device_out(await self._network.pause(call.user_id, call.path["device_id"]))

    @route(
        "POST",
        "/api/v1/devices/<device_id>/resume",
        path_fields=DevicePath,
        summary="Resume sharing on a device",
        tag="network",
        auth=USER,
        response=DeviceView,
        errors=(DeviceNotFound,),
    )
    async def resume_device(self, call: Call) -> DeviceView:
        return device_out(await self._network.resume(call.user_id, call.path["device_id"]))

    @route(
        "DELETE",
        "/api/v1/devices/<device_id>",
        path_fields=DevicePath,
        summary="Remove a device",
        description="Disconnects it (close code 4004); its past uptime and points stay.",
        tag="network",
        auth=USER,
        errors=(DeviceNotFound,),
    )
    async def remove_device(self, call: Call) -> None:
        await self._network.remove(call.user_id, call.path["device_id"])

    @route(
        "GET",
        "/api/v1/ips",
        summary="My IPs",
        description="Devices, uptime, score and points per IP. Order: the address's text.",
        tag="network",
        auth=READ,
        query=PageQuery,
        page_of=IpView,
    )
    async def list_ips(self, call: Call) -> Page[IpView]:
        page = await self._network.list_ips(
            call.user_id, cursor=call.query.cursor, limit=call.query.limit
        )
        return page.map(_ip_out)

    @route(
        "GET",
        "/api/v1/network/summary",
        summary="My network at a glance",
        tag="network",
        auth=READ,
        response=NetworkTotals,
        cache_control=SUMMARY_CACHE,
    )
    async def network_summary(self, call: Call) -> NetworkTotals:
        return _totals(await self._network.summary(call.user_id))
