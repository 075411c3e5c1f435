"""The live socket and account deletion end to end: ``grass.app.run`` on loopback (hypercorn
and the node gateway), a real WebSocket client for the dashboard and a reference node.

A node that connects shows up on its owner's live socket (``device.online``); deleting the
account closes the node (4007), the live socket (4410), and leaves no device behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from grass.app import Server, run
from grass.nodes.node_client import NodeIdentity, NodeStats, run_node
from grass.services.admission import ACCOUNT_DELETED
from tests.http.conftest import quick_config

PW = "a fine password"


@asynccontextmanager
async def dashboard(port: int, offered: list[str]) -> AsyncIterator[WebSocketConnection]:
    """A browser-like live socket. It owns its TCP stream: trio-websocket's
    open_websocket_url leaves it open when the server closes first."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, "127.0.0.1", "/api/v1/live", subprotocols=offered
            )
            try:
                yield ws
            finally:
                await ws.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def close_code(ws) -> int:
    with trio.fail_after(10):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed as closed:
                return closed.reason.code


async def next_event(ws, kind: str) -> dict:
    with trio.fail_after(10):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind:
                return event


async def test_a_node_appears_live_and_deleting_the_account_disconnects_it():
    config = quick_config(
        server={"http_host": "127.0.0.1", "http_port": 0, "node_host": "127.0.0.1", "node_port": 0},
        node={"presence_sync_interval": 0.1, "uptime_flush_interval": 0.2},
    )
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(run, config)
        http = f"http://127.0.0.1:{server.http_port}"
        async with httpx.AsyncClient(base_url=http) as client:
            body = {"email": "ann@example.com", "password": PW}
            user = (await client.post("/api/v1/auth/register", json=body)).json()
            token = (await client.post("/api/v1/auth/login", json=body)).json()["token"]
            offered = ["grass.live.v1", f"bearer.{token}"]
            async with dashboard(server.http_port, offered) as ws:
                assert ws.subprotocol == "grass.live.v1"  # the token is never echoed
                hello = json.loads(await ws.get_message())
                assert (hello["type"], hello["user_id"]) == ("hello", user["id"])
                created = await client.post(
                    "/api/v1/me/node-keys",
                    json={"name": "laptop"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert created.status_code == 201
                node = NodeIdentity(user_id=created.json()["key"])  # the key, not the id
                node_done = trio.Event()

                async def run_the_node(*, task_status: trio.TaskStatus[NodeStats]) -> None:
                    url = server.addresses()["nodes"]
                    try:
                        await run_node(
                            url, node, ping_interval=5, reconnect=False, task_status=task_status
                        )
                    finally:
                        node_done.set()

                stats = await nursery.start(run_the_node)
                online = await next_event(ws, "device.online")
                assert online["device_id"] == node.device_id
                devices = await client.get(
                    "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
                )
                assert [d["status"] for d in devices.json()["items"]] == ["online"]

                deleted = await client.request(
                    "DELETE",
                    "/api/v1/me",
                    json={"password": PW},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert deleted.status_code == 204
                assert await close_code(ws) == 4410
        with trio.fail_after(10):
            await node_done.wait()
        assert stats.last_close == ACCOUNT_DELETED
        await trio.sleep(0.5)  # two flush intervals: nothing writes the device back
        assert await server.backends.storage.devices.find_device(node.device_id) is None
        server.shutdown()
