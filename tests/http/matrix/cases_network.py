"""Matrix cases of the network routes (devices, IPs, summary) and the admin routes."""

from __future__ import annotations

from grass.domain.admin import Ban, BanKind, FlagOverride
from grass.domain.devices import Device, DeviceType
from grass.ids import new_uuid, short_id
from tests.http.conftest import make_actor
from tests.http.conftest import now as utc_now
from tests.http.matrix import Case, Request, World, static


async def owner_device(world: World) -> Device:
    at = utc_now()
    device = Device(
        device_id=new_uuid(),
        user_id=world.owner.id,
        type=DeviceType.EXTENSION,
        ip="203.0.113.9",
        first_seen=at,
        last_seen=at,
    )
    await world.storage.devices.create_device(device)
    return device


def on_device(suffix: str = "", json: object = None) -> Case:
    async def prepare(world: World) -> Request:
        device = await owner_device(world)
        return Request(path=f"/api/v1/devices/{device.device_id}{suffix}", json=json)

    return Case(prepare=prepare, owned=True)


async def _kick(world: World) -> Request:
    device = await owner_device(world)
    return Request(path=f"/api/v1/admin/connections/{device.device_id}")


async def _ban_user(world: World) -> Request:
    victim = await make_actor(world.storage)
    return Request(path="/api/v1/admin/bans/users", json={"user_id": victim.id, "reason": "spam"})


async def _lift_ban(world: World) -> Request:
    admin = world.admin
    ban = Ban(
        id=short_id(),
        kind=BanKind.IP_RANGE,
        target="198.51.100.0/24",
        created_by=admin.id,
        created_at=utc_now(),
    )
    await world.storage.bans.add_ban(ban)
    return Request(path=f"/api/v1/admin/bans/{ban.id}/lift")


async def _clear_flag(world: World) -> Request:
    await world.storage.flags.set_flag(
        FlagOverride(name="beta", enabled=True, updated_by=world.admin.id, updated_at=utc_now())
    )
    return Request(path="/api/v1/admin/flags/beta")


CASES: dict[str, Case] = {
    "list_devices": static("/api/v1/devices"),
    "get_device": on_device(),
    "rename_device": on_device(json={"name": "kitchen"}),
    "pause_device": on_device("/pause"),
    "resume_device": on_device("/resume"),
    "remove_device": on_device(),
    "list_ips": static("/api/v1/ips"),
    "network_summary": static("/api/v1/network/summary"),
    "list_connections": static("/api/v1/admin/connections"),
    "kick_connection": Case(prepare=_kick),
    "list_bans": static("/api/v1/admin/bans"),
    "ban_ip_range": static("/api/v1/admin/bans/ip-ranges", json={"range": "192.0.2.0/24"}),
    "ban_user": Case(prepare=_ban_user),
    "lift_ban": Case(prepare=_lift_ban),
    "list_flags": static("/api/v1/admin/flags"),
    "set_flag": static("/api/v1/admin/flags/beta", json={"enabled": True}),
    "clear_flag": Case(prepare=_clear_flag),
    "audit_log": static("/api/v1/admin/audit"),
}
