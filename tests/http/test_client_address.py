"""The caller's address: trusted proxies, IPv6 counted per /64, and bogus tokens rate-limited."""

from __future__ import annotations

import time
import uuid

import pytest
import structlog.testing

from grass.config import load_config
from grass.domain.addresses import ClientAddress, address_key
from grass.domain.bearer import hash_token, new_node_key
from grass.errors import ConfigError
from grass.nodes import token as tokens
from tests.http.conftest import make_actor, open_full_app, quick_config
from tests.http.helpers import bearer
from tests.storage.conftest import make_node_key

PROXY = {"client": ("10.0.0.5", 40000)}


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.7", [], "203.0.113.7"),
        # Not a trusted peer: whatever it claims is ignored.
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        # The client's own claim (left) is skipped: the last untrusted hop is the client.
        ("10.0.0.5", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
        ("10.0.0.5", ["1.1.1.1", "198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        # Every hop trusted: the leftmost one.
        ("10.0.0.5", ["10.0.0.7"], "10.0.0.7"),
        # Garbage ends the walk at the trusted hop to its right.
        ("10.0.0.5", ["198.51.100.1, drop table"], "10.0.0.5"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("::ffff:203.0.113.7", [], "203.0.113.7"),
        ("2001:db8::1", ["2001:DB8:0:0::2"], "2001:db8::2"),
        ("<local>", ["198.51.100.1"], ""),
    ],
)
def test_client_address(peer, forwarded, expected):
    address = ClientAddress(lambda: ("10.0.0.0/8", "2001:db8::1/128"))
    assert address(peer, forwarded) == expected


def test_ipv6_is_counted_per_64():
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2::ffff") == "2001:db8:1:2::/64"
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"


def test_trusted_proxies_must_be_ranges():
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"GRASS_HTTP_TRUSTED_PROXIES": "10.0.0.0/8,not-a-range"})
    assert any("http.trusted_proxies" in p for p in caught.value.problems)


async def test_bogus_bearer_tokens_are_rate_limited_per_address():
    config = quick_config(limits={"auth_requests_per_minute": 3, "api_requests_per_minute": 600})
    async with open_full_app(config) as full:
        client = full.client()
        where = {"client": ("203.0.113.7", 1)}
        statuses = [
            (
                await client.get("/api/v1/me", headers=bearer("gs_bogus"), scope_base=where)
            ).status_code
            for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]
        # A good token from the same address still works: only failures spend that budget.
        me = await make_actor(full.storage)
        ok = await client.get("/api/v1/me", headers=bearer(me.session_token), scope_base=where)
        assert ok.status_code == 200
        # A bogus API key counts the same.
        other = {"client": ("198.51.100.3", 1)}
        keys = [
            (
                await client.get("/api/v1/devices", headers=bearer("gk_x"), scope_base=other)
            ).status_code
            for _ in range(4)
        ]
        assert keys == [401, 401, 401, 429]


async def test_limits_and_logs_use_the_forwarded_address_from_trusted_proxies_only():
    config = quick_config(
        limits={"auth_requests_per_minute": 2}, http={"trusted_proxies": ("10.0.0.0/8",)}
    )
    async with open_full_app(config) as full:
        client = full.client()
        body = {"email": "nobody@example.com"}

        async def reset(forwarded: str, scope: dict) -> int:
            headers = {"X-Forwarded-For": forwarded}
            response = await client.post(
                "/api/v1/auth/password-reset", json=body, headers=headers, scope_base=scope
            )
            return response.status_code

        with structlog.testing.capture_logs() as events:
            first = [await reset("198.51.100.1", PROXY) for _ in range(3)]
        assert first == [202, 202, 429]
        assert {e.get("ip") for e in events if e["event"] == "request"} == {"198.51.100.1"}
        # Another client behind the same proxy has its own budget.
        assert await reset("198.51.100.2", PROXY) == 202
        # An untrusted peer cannot pick a fresh address by sending the header.
        direct = {"client": ("203.0.113.9", 1)}
        assert [await reset(f"192.0.2.{n}", direct) for n in range(3)] == [202, 202, 429]


async def test_ipv6_clients_share_one_budget_per_64():
    config = quick_config(limits={"auth_requests_per_minute": 2})
    async with open_full_app(config) as full:
        client = full.client()
        body = {"email": "nobody@example.com"}
        statuses = [
            (
                await client.post(
                    "/api/v1/auth/password-reset",
                    json=body,
                    scope_base={"client": (f"2001:db8:5:6::{n}", 1)},
                )
            ).status_code
            for n in range(1, 4)
        ]
        assert statuses == [202, 202, 429]
        neighbour = {"client": ("2001:db8:5:7::1", 1)}
        response = await client.post("/api/v1/auth/password-reset", json=body, scope_base=neighbour)
        assert response.status_code == 202


async def test_login_lockout_counts_an_ipv6_64_as_one_address():
    config = quick_config(
        accounts={"max_failures_per_account": 0, "max_failures_per_ip": 2},
    )
    async with open_full_app(config) as full:
        client = full.client()
        me = await make_actor(full.storage)
        wrong = {"email": me.user.email, "password": "not the password"}
        for n in (1, 2):
            response = await client.post(
                "/api/v1/auth/login", json=wrong, scope_base={"client": (f"2001:db8::{n}", 1)}
            )
            assert response.status_code == 401
        locked = await client.post(
            "/api/v1/auth/login",
            json=wrong | {"password": "correct horse battery"},
            scope_base={"client": ("2001:db8::ffff", 1)},
        )
        assert locked.status_code == 429
        assert (await locked.get_json())["error"]["code"] == "login_locked"


async def test_checkin_binds_the_token_to_the_forwarded_address():
    config = quick_config(http={"trusted_proxies": ("10.0.0.0/8",)})
    async with open_full_app(config) as full:
        me = await make_actor(full.storage)
        node_key = new_node_key()
        await full.storage.node_keys.create_node_key(
            make_node_key(me.user, key_hash=hash_token(node_key))
        )
        body = {
            "browserId": str(uuid.uuid4()),
            "userId": node_key,
            "version": "5.1.1",
            "deviceType": "extension",
        }
        response = await full.client().post(
            "/checkin", json=body, headers={"X-Forwarded-For": "198.51.100.1"}, scope_base=PROXY
        )
        assert response.status_code == 201, await response.get_data()
        token = (await response.get_json())["token"]
        assert full.gateway is not None
        key, now = full.gateway.token_key, time.time()
        claims = tokens.verify(key, token, "198.51.100.1", now)
        assert claims.user_id == me.id
        with pytest.raises(tokens.TokenIpMismatch):
            tokens.verify(key, token, "10.0.0.5", now)
