"""Node messages are text: a string escaping a lone surrogate closes the socket with 1007 and
nothing of it is stored; nesting too deep is malformed JSON; the node beside keeps its uptime.

One AUTH with ``"version": "4\\udfff"`` used to be accepted: its device row made every uptime
flush fail on PostgreSQL ("surrogates not allowed"), for every node.
"""

from __future__ import annotations

import json
import uuid

import trio

from grass.websocket.client import open_node_socket
from tests.nodes.test_gateway import (
    PING,
    authenticate,
    close_code,
    harness,
    heartbeat,
    joined,
    wait_for,
)


def _auth(request: dict, owner: str, device_id: str, **changes: object) -> str:
    result = {
        "browser_id": device_id,
        "user_id": owner,
        "user_agent": "test",
        "timestamp": 0,
        "device_type": "extension",
        "version": "4.0.0",
    } | changes
    # json.dumps escapes the surrogate: the frame itself is valid UTF-8.
    return json.dumps({"id": request["id"], "origin_action": "AUTH", "result": result})


async def test_an_auth_with_a_lone_surrogate_closes_1007_and_stores_nothing() -> None:
    async with harness() as h, open_node_socket(h.url) as good:
        good_id = await authenticate(good, h.node_key)
        await joined(h, good_id)
        for field in ("version", "user_agent", "user_id"):
            async with open_node_socket(h.url) as bad:
                request = json.loads(await bad.get_message())
                device_id = str(uuid.uuid4())
                await bad.send_message(_auth(request, h.node_key, device_id, **{field: "4\udfff"}))
                assert await close_code(bad) == 1007
            assert h.gateway.registry.get(device_id) is None
            assert await h.storage.devices.find_device(device_id) is None
        h.clock.now += 60
        await heartbeat(good)
        result = await h.gateway.flusher.flush_now()
        assert result is not None
        assert result.applied == 1
        assert (await h.storage.uptime.uptime_stats(device_id=good_id)).seconds == 60
        assert h.gateway.metrics.node_closes.labels("1007")._value.get() == 3


async def test_after_auth_a_lone_surrogate_closes_1007_and_deep_json_is_answered() -> None:
    async with harness() as h, open_node_socket(h.url) as ws:
        device_id = await authenticate(ws, h.node_key)
        await joined(h, device_id)
        await ws.send_message(PING[:-1] + ',"pad":' + "[" * 20_000 + "]" * 20_000 + "}")
        with trio.fail_after(5):
            reply = json.loads(await ws.get_message())
        assert reply["action"] == "ERROR"
        assert reply["data"]["code"] == "malformed_json"
        await heartbeat(ws)
        await ws.send_message(json.dumps({"id": "\udfff", "action": "PING", "data": {}}))
        assert await close_code(ws) == 1007
        await wait_for(lambda: h.gateway.registry.get(device_id) is None)
