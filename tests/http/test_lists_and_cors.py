"""Routes the other HTTP tests leave out: my IPs, kicking a connection, walking every page of
the network, account and admin lists, and CORS on a real route."""

from __future__ import annotations

import datetime as dt

from grass.domain.admin import Ban, BanKind, FlagOverride
from grass.domain.devices import Device, DeviceStatus, DeviceType
from grass.domain.users import Role
from grass.ids import new_uuid, short_id
from tests.http.conftest import make_actor, open_full_app, quick_config
from tests.http.helpers import bearer
from tests.storage.conftest import delta


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def add_device(full, user_id: str, ip: str, *, online: bool = False, n: int = 0) -> Device:
    at = utc_now() - dt.timedelta(minutes=10 - n)  # first seen in the order made
    device = Device(
        device_id=new_uuid(),
        user_id=user_id,
        type=DeviceType.EXTENSION,
        ip=ip,
        status=DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE,
        first_seen=at,
        last_seen=at,
    )
    await full.storage.devices.create_device(device)
    if online:
        await full.shared.presence.update_many({device.device_id: "local"}, ttl=60)
    return device


async def walk(client, path: str, token: str, limit: int, **query: str) -> list[dict]:
    """Every item of a list, page by page; each page holds at most ``limit``."""
    items: list[dict] = []
    cursor = None
    for _ in range(100):
        args = {"limit": str(limit), **query} | ({"cursor": cursor} if cursor else {})
        response = await client.get(path, query_string=args, headers=bearer(token))
        assert response.status_code == 200, await response.get_data()
        page = await response.get_json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursors never end")


async def test_my_ips_with_their_devices_uptime_and_pages(full_app):
    me = await make_actor(full_app.storage)
    other = await make_actor(full_app.storage)
    one = await add_device(full_app, me.id, "203.0.113.10", online=True, n=0)
    two = await add_device(full_app, me.id, "203.0.113.10", n=1)
    three = await add_device(full_app, me.id, "198.51.100.20", n=2)
    await add_device(full_app, other.id, "192.0.2.30")
    hour = utc_now().replace(minute=0, second=0)
    await full_app.storage.uptime.add_uptime(
        [delta(one, hour, 600), delta(two, hour, 300), delta(three, hour, 120)]
    )
    client = full_app.client()
    items = await walk(client, "/api/v1/ips", me.api_key, limit=1)
    assert [i["ip"] for i in items] == ["198.51.100.20", "203.0.113.10"]
    shared = items[1]
    assert shared["devices"] == sorted([one.device_id, two.device_id])
    assert shared["devices_online"] == 1
    assert (shared["uptime_today_seconds"], shared["uptime_total_seconds"]) == (900, 900)
    assert items[0]["uptime_total_seconds"] == 120
    theirs = await walk(client, "/api/v1/ips", other.session_token, limit=10)
    assert [i["ip"] for i in theirs] == ["192.0.2.30"]


async def test_walking_my_devices_sessions_and_keys(full_app):
    me = await make_actor(full_app.storage)
    made = [await add_device(full_app, me.id, "203.0.113.1", n=n) for n in range(5)]
    client = full_app.client()
    devices = await walk(client, "/api/v1/devices", me.session_token, limit=2)
    assert [d["device_id"] for d in devices] == [d.device_id for d in made]
    for _ in range(2):
        await client.post(
            "/api/v1/me/api-keys",
            json={"name": "k", "scopes": ["stats:read"]},
            headers=bearer(me.session_token),
        )
        await client.post(
            "/api/v1/auth/login",
            json={"email": me.user.email, "password": "correct horse battery"},
        )
    keys = await walk(client, "/api/v1/me/api-keys", me.session_token, limit=2)
    assert len({k["id"] for k in keys}) == 3
    sessions = await walk(client, "/api/v1/me/sessions", me.session_token, limit=2)
    assert len({s["id"] for s in sessions}) == 3
    assert sum(s["current"] for s in sessions) == 1


async def test_kicking_a_connection_and_walking_the_admin_lists(full_app):
    admin = await make_actor(full_app.storage, role=Role.ADMIN)
    user = await make_actor(full_app.storage)
    online = [
        await add_device(full_app, user.id, "203.0.113.5", online=True, n=n) for n in range(3)
    ]
    client = full_app.client()
    auth = bearer(admin.session_token)
    connections = await walk(client, "/api/v1/admin/connections", admin.session_token, limit=2)
    assert [c["device_id"] for c in connections] == sorted(d.device_id for d in online)
    assert {c["instance"] for c in connections} == {"local"}
    kicked = await client.delete(f"/api/v1/admin/connections/{online[0].device_id}", headers=auth)
    assert kicked.status_code == 204
    unknown = await client.delete(f"/api/v1/admin/connections/{new_uuid()}", headers=auth)
    assert unknown.status_code == 404
    assert (await unknown.get_json())["error"]["code"] == "connection_not_found"
    for n in range(3):
        await full_app.storage.bans.add_ban(
            Ban(
                id=short_id(),
                kind=BanKind.IP_RANGE,
                target=f"192.0.2.{n * 8}/29",
                created_by=admin.id,
                created_at=utc_now() + dt.timedelta(seconds=n),
            )
        )
    bans = await walk(client, "/api/v1/admin/bans", admin.session_token, limit=2)
    assert [b["target"] for b in bans] == ["192.0.2.16/29", "192.0.2.8/29", "192.0.2.0/29"]
    for name in ("alpha", "beta", "gamma"):
        await full_app.storage.flags.set_flag(
            FlagOverride(name=name, enabled=True, updated_by=admin.id, updated_at=utc_now())
        )
    flags = await walk(client, "/api/v1/admin/flags", admin.session_token, limit=1)
    assert [f["name"] for f in flags] == ["alpha", "beta", "gamma"]
    for n in range(2):
        await client.put(f"/api/v1/admin/flags/f{n}", json={"enabled": True}, headers=auth)
    audit = await walk(client, "/api/v1/admin/audit", admin.session_token, limit=2)
    assert [e["action"] for e in audit] == ["flag.set", "flag.set", "connection.kick"]
    assert audit[-1]["target_id"] == online[0].device_id
    only_kicks = await walk(
        client, "/api/v1/admin/audit", admin.session_token, limit=5, action="connection.kick"
    )
    assert len(only_kicks) == 1


async def test_cors_on_a_real_route_with_an_allowed_origin():
    config = quick_config(http={"cors_origins": ("https://app.example",)})
    async with open_full_app(config) as full:
        me = await make_actor(full.storage)
        client = full.client()
        preflight = await client.options(
            "/api/v1/devices",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        read = await client.get(
            "/api/v1/devices",
            headers=bearer(me.session_token) | {"Origin": "https://app.example"},
        )
        assert read.status_code == 200
        assert read.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "ETag" in read.headers["Access-Control-Expose-Headers"]
        assert "Origin" in read.headers["Vary"]
        # An error carries the header too: the browser lets the page read why it failed.
        denied = await client.get("/api/v1/devices", headers={"Origin": "https://app.example"})
        assert denied.status_code == 401
        assert denied.headers["Access-Control-Allow-Origin"] == "https://app.example"
        elsewhere = await client.get(
            "/api/v1/devices",
            headers=bearer(me.session_token) | {"Origin": "https://evil.example"},
        )
        assert "Access-Control-Allow-Origin" not in elsewhere.headers
