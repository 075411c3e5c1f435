"""``grass serve`` with few file descriptors, under more half-open node connections from one
address than it has descriptors (the issue: ~20 000 of them, 15 866 from one address, took every
descriptor, and both the node port and HTTP stopped answering): a well-behaved node and an
HTTP request are still served, since the node port never takes the descriptors it leaves to
the rest (``node.descriptor_reserve``; grass.websocket.admission)."""

from __future__ import annotations

import json
import re
import resource

import httpx
import trio

from grass.websocket.client import open_node_socket
from tests.foundation.test_cli import grass_serve

DESCRIPTORS = 256  # RLIMIT_NOFILE of the server: a node cap of 128 beside the default reserve
HALF_OPEN = 2 * DESCRIPTORS


def few_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))


async def test_half_open_node_connections_leave_descriptors_for_nodes_and_http() -> None:
    async with grass_serve(
        preexec_fn=few_descriptors,
        # Held for the whole test, all from one address, as in the issue.
        GRASS_NODE_CONNECT_TIMEOUT="60",
        GRASS_NODE_MAX_PENDING_PER_ADDRESS=str(10 * HALF_OPEN),
    ) as grass:
        streams: list[trio.SocketStream] = []
        try:
            for i in range(HALF_OPEN):
                stream = await trio.open_tcp_stream("127.0.0.1", grass.node_port)
                streams.append(stream)
                if i % 2:  # half send the start of a request line, half nothing
                    await stream.send_all(b"GET / HTTP/1.1\r\n")
            with trio.fail_after(10):
                async with open_node_socket(f"ws://127.0.0.1:{grass.node_port}/") as ws:
                    assert json.loads(await ws.get_message())["action"] == "AUTH"
            with trio.fail_after(10):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{grass.http_port}") as c:
                    assert (await c.get("/healthz")).status_code == 200
                    metrics = (await c.get("/metrics")).text
            found = re.search(
                r'grass_node_connections_dropped_total\{reason="capacity"\} (\S+)', metrics
            )
            assert found is not None
            assert float(found[1]) >= HALF_OPEN - DESCRIPTORS // 2
        finally:
            for stream in streams:
                await stream.aclose()
