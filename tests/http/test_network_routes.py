"""The network and admin routes through the Quart test client."""

from __future__ import annotations

from grass.domain.users import Role
from tests.http.conftest import make_actor
from tests.http.helpers import bearer
from tests.http.matrix import World
from tests.http.matrix.cases_network import owner_device


async def test_devices_list_pause_and_conditional_get(full_app):
    me = await make_actor(full_app.storage)
    world = World(full_app, owner=me, other=me, admin=me)
    device = await owner_device(world)
    client = full_app.client()
    first = await client.get("/api/v1/devices", headers=bearer(me.session_token))
    assert first.status_code == 200
    body = await first.get_json()
    assert [d["device_id"] for d in body["items"]] == [device.device_id]
    assert body["items"][0]["status"] == "offline"
    etag = first.headers["ETag"]
    unchanged = await client.get(
        "/api/v1/devices", headers={**bearer(me.session_token), "If-None-Match": etag}
    )
    assert unchanged.status_code == 304
    paused = await client.post(
        f"/api/v1/devices/{device.device_id}/pause", headers=bearer(me.session_token)
    )
    assert (await paused.get_json())["status"] == "paused"
    changed = await client.get(
        "/api/v1/devices", headers={**bearer(me.session_token), "If-None-Match": etag}
    )
    assert changed.status_code == 200
    summary = await client.get("/api/v1/network/summary", headers=bearer(me.api_key))
    assert summary.headers["Cache-Control"] == "private, max-age=5"
    assert (await summary.get_json())["devices_paused"] == 1
    bad = await client.patch(
        f"/api/v1/devices/{device.device_id}",
        json={"name": "x" * 65},
        headers=bearer(me.session_token),
    )
    assert bad.status_code == 422


async def test_admin_bans_flags_and_audit(full_app):
    admin = await make_actor(full_app.storage, role=Role.ADMIN)
    victim = await make_actor(full_app.storage)
    client = full_app.client()
    auth = bearer(admin.session_token)
    bad = await client.post(
        "/api/v1/admin/bans/ip-ranges", json={"range": "10.0.0.1/8"}, headers=auth
    )
    assert bad.status_code == 422
    assert "range" in (await bad.get_json())["error"]["details"]["fields"]
    made = await client.post(
        "/api/v1/admin/bans/ip-ranges", json={"range": "10.0.0.0/8"}, headers=auth
    )
    assert made.status_code == 201
    again = await client.post(
        "/api/v1/admin/bans/ip-ranges", json={"range": "10.0.0.0/8"}, headers=auth
    )
    assert again.status_code == 409
    banned = await client.post(
        "/api/v1/admin/bans/users", json={"user_id": victim.id}, headers=auth
    )
    assert banned.status_code == 201
    refused = await client.get("/api/v1/devices", headers=bearer(victim.session_token))
    assert refused.status_code in (401, 403)  # its sessions are revoked, the account banned
    flag = await client.put("/api/v1/admin/flags/beta", json={"enabled": True}, headers=auth)
    assert (await flag.get_json())["source"] == "override"
    bad_flag = await client.put("/api/v1/admin/flags/Bad", json={"enabled": True}, headers=auth)
    assert bad_flag.status_code == 422
    log = await (await client.get("/api/v1/admin/audit", headers=auth)).get_json()
    assert [e["action"] for e in log["items"]] == ["flag.set", "user.ban", "ip_range.ban"]
    assert all(e["actor_id"] == admin.id for e in log["items"])
