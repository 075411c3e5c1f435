"""The live dashboard socket (/api/v1/live) through the Quart test client, on the app
``grass serve`` builds: authentication, events and their replay, and every way it closes."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest
import trio
from quart.testing.connections import WebsocketResponseError

try:  # the test client's close, by release (the lock has quart 0.23 on Python 3.13, 0.22 before)
    from quart.testing.connections import WebsocketDisconnectError
except ImportError:
    from quart.wrappers.base import ClientDisconnectedError as WebsocketDisconnectError

from grass.domain.bearer import hash_token, new_api_key
from grass.domain.users import ApiKey, ApiScope, Role
from grass.ids import new_uuid, short_id
from grass.services.live import LiveEvents
from tests.http.conftest import PASSWORD, make_actor, now, open_full_app, quick_config
from tests.http.helpers import bearer

LIVE = "/api/v1/live"
FROM = {"client": ("203.0.113.7", 40000)}


def events_of(full) -> LiveEvents:
    return full.services.cluster.events


def offer(token: str) -> list[str]:
    return ["grass.live.v1", f"bearer.{token}"]


@asynccontextmanager
async def live(full, token: str | None = None, *, subprotocols=None, **kwargs):
    """A socket; ``token`` is offered as a subprotocol (the test client drops ``subprotocols``
    on the floor: they go into the ASGI scope, as hypercorn puts them)."""
    if token is not None and subprotocols is None:
        subprotocols = offer(token)
    kwargs["scope_base"] = FROM | {"subprotocols": subprotocols or []}
    async with full.client().websocket(LIVE, **kwargs) as socket:
        yield socket


async def receive(socket) -> dict:
    with trio.fail_after(5):
        return json.loads(await socket.receive())


async def closed_with(socket) -> int:
    """The close code, after whatever was still to read."""
    with trio.fail_after(5):
        while True:
            try:
                await socket.receive()
            except WebsocketDisconnectError as exc:
                return exc.args[0]


async def refused(full, **kwargs) -> tuple[int, dict]:
    """The HTTP reply of an upgrade refused before any WebSocket exists."""
    with pytest.RaisesGroup(WebsocketResponseError, flatten_subgroups=True) as caught:
        async with live(full, **kwargs) as socket:
            await socket.receive()
    (error,) = caught.value.exceptions
    response = error.response
    return response.status_code, (await response.get_json())["error"]


async def device_event(full, user_id: str, device_id: str | None = None) -> str:
    device_id = device_id or new_uuid()
    await events_of(full).device(user_id, device_id, "renamed")
    return device_id


async def test_a_session_gets_hello_then_its_own_events_only(full_app):
    me = await make_actor(full_app.storage)
    other = await make_actor(full_app.storage)
    async with live(full_app, me.session_token) as socket:
        hello = await receive(socket)
        assert hello == {"type": "hello", "user_id": me.id, "resync": False, "last_id": None}
        await device_event(full_app, other.id)
        mine = await device_event(full_app, me.id)
        event = await receive(socket)
        assert event["type"] == "device.updated"
        assert (event["device_id"], event["change"]) == (mine, "renamed")
        assert event["id"]
        await socket.send(json.dumps({"type": "ping"}))
        assert await receive(socket) == {"type": "pong"}


@pytest.mark.parametrize("how", ["first message", "header"])
async def test_other_ways_to_authenticate(full_app, how):
    me = await make_actor(full_app.storage)
    kwargs = {"headers": bearer(me.session_token)} if how == "header" else {}
    async with live(full_app, **kwargs) as socket:
        if how == "first message":
            await socket.send(json.dumps({"type": "auth", "token": me.session_token}))
        assert (await receive(socket))["user_id"] == me.id


async def test_refusals_before_the_upgrade_use_the_error_shape(full_app):
    me = await make_actor(full_app.storage)
    status, error = await refused(full_app, query_string={"token": me.session_token})
    assert (status, error["code"]) == (400, "token_in_url")
    status, error = await refused(full_app, subprotocols=offer("gs_bogus"))
    assert (status, error["code"]) == (401, "invalid_token")
    status, error = await refused(
        full_app, subprotocols=offer(me.session_token), headers={"Origin": "https://evil.example"}
    )
    assert (status, error["code"]) == (403, "origin_not_allowed")
    status, _ = await refused(full_app, subprotocols=[f"bearer.{me.session_token}"])
    assert status == 400  # a browser needs a protocol to select: grass.live.v1


async def test_the_web_uis_own_origin_and_listed_origins_are_allowed():
    config = quick_config(
        http={"public_url": "https://grass.example", "cors_origins": ("https://app.example",)}
    )
    async with open_full_app(config) as full:
        me = await make_actor(full.storage)
        for origin in ("https://grass.example", "https://app.example"):
            async with live(full, me.session_token, headers={"Origin": origin}) as socket:
                assert (await receive(socket))["type"] == "hello"


async def test_bad_or_missing_auth_messages_close_the_socket(full_app, autojump_clock):
    async with live(full_app) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "gs_bogus"}))
        assert await closed_with(socket) == 4401
    async with live(full_app) as socket:
        await socket.send("not json")
        assert await closed_with(socket) == 4400
    async with live(full_app) as socket:
        await trio.sleep(11)  # nothing sent within the 10 s
        assert await closed_with(socket) == 4401


async def test_anything_but_a_ping_closes_4400(full_app):
    me = await make_actor(full_app.storage)
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        await socket.send(json.dumps({"type": "subscribe", "to": "everything"}))
        assert await closed_with(socket) == 4400
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        await socket.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
        assert await closed_with(socket) == 1009


async def test_a_lone_surrogate_closes_1007_and_deep_json_4400(full_app):
    """A ``\\udfff`` escape decodes to a string UTF-8 cannot encode: the message is not text
    (the token's hash used to fail on it); nesting is measured before parsing."""
    me = await make_actor(full_app.storage)
    async with live(full_app) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "gs_\udfff"}))
        assert await closed_with(socket) == 1007
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        await socket.send(json.dumps({"type": "ping", "pad": "\udfff"}))
        assert await closed_with(socket) == 1007
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        await socket.send("[" * 2000 + "]" * 2000)
        assert await closed_with(socket) == 4400


async def test_a_reconnecting_client_gets_what_it_missed(full_app):
    me = await make_actor(full_app.storage)
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        first = await device_event(full_app, me.id)
        seen = (await receive(socket))["id"]
    missed = [await device_event(full_app, me.id) for _ in range(3)]
    async with live(full_app, me.session_token, query_string={"since": seen}) as socket:
        hello = await receive(socket)
        assert hello["resync"] is False
        replayed = [await receive(socket) for _ in missed]
        assert [e["device_id"] for e in replayed] == missed
        assert hello["last_id"] == replayed[-1]["id"]
        live_one = await device_event(full_app, me.id)
        assert (await receive(socket))["device_id"] == live_one
    assert first not in missed
    # The resume point may also come with the auth message.
    async with live(full_app) as socket:
        auth = {"type": "auth", "token": me.session_token, "since": replayed[0]["id"]}
        await socket.send(json.dumps(auth))
        assert (await receive(socket))["resync"] is False
        assert [(await receive(socket))["device_id"] for _ in range(3)] == [*missed[1:], live_one]


async def test_an_id_the_log_no_longer_holds_asks_for_a_resync(full_app):
    me = await make_actor(full_app.storage)
    async with live(full_app, me.session_token, query_string={"since": "1-1"}) as socket:
        hello = await receive(socket)
        assert hello["resync"] is True


@pytest.mark.parametrize("ender", ["logout", "revoke", "password", "delete", "ban"])
async def test_a_revoked_session_closes_its_socket_4410(full_app, ender):
    me = await make_actor(full_app.storage)
    admin = await make_actor(full_app.storage, role=Role.ADMIN)
    client = full_app.client()
    login = await client.post(
        "/api/v1/auth/login", json={"email": me.user.email, "password": PASSWORD}
    )
    second = (await login.get_json())["token"]
    async with (
        live(full_app, me.session_token) as watched,
        live(full_app, second) as bystander,
    ):
        await receive(watched)
        await receive(bystander)
        auth = bearer(me.session_token)
        if ender == "logout":
            response = await client.post("/api/v1/auth/logout", headers=auth)
        elif ender == "revoke":
            path = f"/api/v1/me/sessions/{me.session_hash}"
            response = await client.delete(path, headers=bearer(second))
        elif ender == "password":
            body = {"current_password": PASSWORD, "new_password": "another fine one"}
            response = await client.post("/api/v1/me/password", json=body, headers=bearer(second))
        elif ender == "delete":
            response = await client.delete("/api/v1/me", json={"password": PASSWORD}, headers=auth)
        else:
            body = {"user_id": me.id}
            response = await client.post(
                "/api/v1/admin/bans/users", json=body, headers=bearer(admin.session_token)
            )
        assert response.status_code in (201, 204), await response.get_data()
        assert await closed_with(watched) == 4410
        if ender in ("logout", "revoke", "password"):
            # Only the socket of the session that ended closes.
            mine = await device_event(full_app, me.id)
            assert (await receive(bystander))["device_id"] == mine
        else:
            assert await closed_with(bystander) == 4410


async def test_api_keys_see_the_events_of_their_scopes_and_close_when_revoked(full_app):
    me = await make_actor(full_app.storage)
    key = new_api_key()
    api_key = ApiKey(
        id=short_id(),
        user_id=me.id,
        name="earnings only",
        key_hash=hash_token(key),
        prefix=key[:8],
        scopes=frozenset({ApiScope.EARNINGS_READ}),
        created_at=now(),
    )
    await full_app.storage.users.create_api_key(api_key)
    events = events_of(full_app)
    async with live(full_app, key) as socket:
        assert (await receive(socket))["user_id"] == me.id
        await device_event(full_app, me.id)  # devices: not this key's business
        await events.publish([(me.id, {"type": "notification", "text": "sessions only"})])
        await events.earnings_credited(7, {me.id: 1_500_000})
        event = await receive(socket)
        assert (event["type"], event["amount"], event["epoch"]) == (
            "earnings.credited",
            1_500_000,
            7,
        )
        response = await full_app.client().delete(
            f"/api/v1/me/api-keys/{api_key.id}", headers=bearer(me.session_token)
        )
        assert response.status_code == 204
        assert await closed_with(socket) == 4410
    async with live(full_app, me.api_key) as socket:  # every scope: device events too
        await receive(socket)
        mine = await device_event(full_app, me.id)
        assert (await receive(socket))["device_id"] == mine


async def test_a_lost_revocation_is_caught_by_the_periodic_recheck(autojump_clock):
    config = quick_config(http={"live_recheck_interval": 30.0})
    async with open_full_app(config) as full:
        me = await make_actor(full.storage)
        async with live(full, me.session_token) as socket:
            await receive(socket)
            # Revoked in the store without the announcement (as if Redis lost it).
            await full.storage.users.revoke_session(me.session_hash, now())
            await trio.sleep(31)
            assert await closed_with(socket) == 4410


async def test_shutdown_closes_every_socket_1001(full_app):
    me = await make_actor(full_app.storage)
    hub = full_app.http.live_hub
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        assert len(hub) == 1
        hub.close_all()
        assert await closed_with(socket) == 1001
    assert len(hub) == 0


async def test_a_client_too_slow_to_read_is_closed_4503_and_may_resume(full_app):
    me = await make_actor(full_app.storage)
    events = events_of(full_app)
    async with live(full_app, me.session_token) as socket:
        await receive(socket)
        # Far more than the test client's buffer and the subscription's: nobody reads.
        await events.publish(
            [(me.id, {"type": "device.updated", "device_id": str(n)}) for n in range(400)]
        )
        got = []
        with trio.fail_after(5):
            while True:
                try:
                    got.append(json.loads(await socket.receive()))
                except WebsocketDisconnectError as exc:
                    code = exc.args[0]
                    break
        assert code == 4503
        assert 0 < len(got) < 400


async def test_connecting_is_rate_limited_per_address():
    config = quick_config(limits={"api_requests_per_minute": 2})
    async with open_full_app(config) as full:
        me = await make_actor(full.storage)
        for _ in range(2):
            async with live(full, me.session_token) as socket:
                await receive(socket)
        status, error = await refused(full, subprotocols=offer(me.session_token))
        assert (status, error["code"]) == (429, "rate_limited")
