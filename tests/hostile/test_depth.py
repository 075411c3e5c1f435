"""The JSON depth bomb, in a subprocess: JSON nested up to the size caps (1 MiB bodies, 64 KiB
node messages), to HTTP routes and to nodes before and after AUTH.

Not in-process: the server imports py_ecc, which raises the recursion limit to 100 000, so a
body of 100 000 ``[`` overflows the C stack and kills the whole process (#13 finding 1); played
in pytest's own process it would take the test run down with it. Here ``grass serve`` runs as a
child (tests/foundation/test_cli.py's harness) at its production recursion limit, and its death
is a failed assertion. Shallower nesting (up to ``strategies.SAFE_DEPTH``) is part of the
in-process campaigns.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from wsproto.events import CloseConnection, TextMessage

from tests.foundation.test_cli import Process, grass_serve
from tests.hostile import wire
from tests.hostile.campaign import count, hostile_settings
from tests.hostile.strategies import SAFE_DEPTH
from tests.hostile.test_http import check_reply
from tests.nodes.test_gateway import RawNode

pytestmark = pytest.mark.slow

CHEAP = {
    "GRASS_ACCOUNTS_ARGON2_TIME_COST": "1",
    "GRASS_ACCOUNTS_ARGON2_MEMORY_KIB": "1024",
    "GRASS_LIMITS_AUTH_REQUESTS_PER_MINUTE": "0",
    "GRASS_LIMITS_API_REQUESTS_PER_MINUTE": "0",
}
PASSWORD = "correct horse battery"
ROUTES = ["/api/v1/auth/login", "/api/v1/auth/register", "/checkin", "/api/v1/me/api-keys"]
TARGETS = [*ROUTES, "node", "stranger"]


class Child:
    """The subprocess under attack, a user of it, and checks that it is still there."""

    def __init__(self, grass: Process, client: httpx.AsyncClient, node_key: str, token: str):
        self.grass, self.client, self.node_key, self.token = grass, client, node_key, token

    async def alive(self) -> None:
        assert self.grass.proc.returncode is None, (
            f"grass serve died ({self.grass.proc.returncode}): {self.grass.stderr[-2000:]!r}"
        )
        assert (await self.client.get("/healthz")).status_code == 200


async def hit(child: Child, target: str, text: str) -> None:
    try:
        if target in ROUTES:
            headers = {"Authorization": f"Bearer {child.token}"}
            reply = await child.client.post(target, content=text.encode(), headers=headers)
            assert reply.status_code in (400, 413, 422), reply.text[:300]
            check_reply(None, reply)
        else:
            await _node(child, target == "node", text)
    except (httpx.TransportError, trio.BrokenResourceError, OSError):
        await trio.sleep(0.2)  # a dead server: say so, rather than how the socket broke
        await child.alive()
        raise
    await child.alive()


async def _node(child: Child, signed_in: bool, text: str) -> None:
    async with RawNode.connect(child.grass.node_port) as node:
        if signed_in:
            await wire.signed_in(node, child.node_key)
        else:
            await wire.next_reply(node)  # the AUTH request, left unanswered
        await node.send_text(text)
        reply = await wire.next_reply(node)
        if signed_in:
            assert isinstance(reply, TextMessage), reply
            assert json.loads(reply.data)["data"]["code"] == "malformed_json", reply.data
        else:
            assert isinstance(reply, CloseConnection), reply
            assert reply.code == 1008, reply


UNITS = {"array": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"a":', "}]")}


def _bomb(depth: int, target: str, kind: str, closed: bool) -> str:
    """``depth`` levels of ``kind``, closed or not, cut to fit the target's size cap."""
    cap = wire.MAX_MESSAGE if target in ("node", "stranger") else 1 << 20
    head, tail = UNITS[kind]
    depth = min(depth, (cap - 1) // (len(head) + (len(tail) if closed else 0)))
    return head * depth + ("0" + tail * depth if closed else "")


async def _open_child(grass: Process, client: httpx.AsyncClient) -> Child:
    body = {"email": "deep@example.com", "password": PASSWORD}
    registered = await client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    token = (await client.post("/api/v1/auth/login", json=body)).json()["token"]
    created = await client.post(
        "/api/v1/me/node-keys", json={"name": "deep"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    return Child(grass, client, created.json()["key"], token)


def driven(child: Child, play: Callable[..., Awaitable[Any]]) -> Callable[[], None]:
    @hostile_settings(60)
    @given(
        depth=st.integers(SAFE_DEPTH, 1 << 20),
        target=st.sampled_from(TARGETS),
        kind=st.sampled_from(sorted(UNITS)),
        closed=st.booleans(),
    )
    @example(depth=100_000, target="/api/v1/auth/login", kind="array", closed=False)
    @example(depth=wire.MAX_MESSAGE, target="node", kind="array", closed=False)
    def examples(depth: int, target: str, kind: str, closed: bool) -> None:
        trio.from_thread.run(play, child, target, _bomb(depth, target, kind, closed))
        count("http/depth")

    return examples


async def test_json_nested_to_the_size_caps_never_kills_the_server():
    async with grass_serve(**CHEAP) as grass:
        base_url = f"http://127.0.0.1:{grass.http_port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            child = await _open_child(grass, client)
            await trio.to_thread.run_sync(driven(child, hit))
