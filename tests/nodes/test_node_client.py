"""The reference node against the real gateway: v4 by node key, v5 through a real /checkin."""

from __future__ import annotations

import uuid
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from grass.http.api import api_of
from grass.http.app import create_app
from grass.http.checkin import CheckinRoutes
from grass.nodes.node_client import NodeIdentity, run_node, run_nodes
from tests.http.helpers import guard_for
from tests.nodes.test_gateway import harness, wait_for


async def test_run_nodes_v4_heartbeats_and_stops_on_cancel():
    async with harness() as h, trio.open_nursery() as nursery:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        stats = await nursery.start(
            partial(run_nodes, h.url, h.node_key, device_ids=ids, ping_interval=0.02, jitter=0.5)
        )
        assert len(stats) == 3
        await wait_for(lambda: len(h.gateway.registry) == 3)
        await wait_for(lambda: all(s.pongs >= 3 for s in stats))
        assert h.gateway.registry.devices_of(h.user_id) == set(ids)
        nursery.cancel_scope.cancel()
    # every node socket closed: the gateway saw them go
    assert len(h.gateway.registry) == 0


async def test_a_node_without_reconnect_reports_the_close_code():
    async with harness() as h:
        node = NodeIdentity(user_id="x" * 21)  # a bare user id: closed 1008
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                stats = await nursery.start(partial(run_node, h.url, node, reconnect=False))
        assert stats.authenticated == 1
        assert stats.last_close == 1008


async def test_v5_node_checks_in_over_http_then_connects_with_its_token():
    async with harness(node={"allow_legacy_auth": False}) as h, trio.open_nursery() as nursery:
        app = create_app(
            metrics=h.gateway.metrics, readiness=_ready, guard=guard_for(h.storage.users)
        )
        api_of(app).add_resource(
            CheckinRoutes(
                h.gateway,
                h.storage,
                h.gateway.running,
                destinations=lambda: [f"127.0.0.1:{h.port}"],
            )
        )
        hc = HypercornConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        stop = trio.Event()
        binds = await nursery.start(partial(hypercorn_serve, app, hc, shutdown_trigger=stop.wait))
        http_port = int(binds[0].rsplit(":", 1)[1])
        node = NodeIdentity(user_id=h.node_key)
        stats = await nursery.start(
            partial(
                run_node,
                "ws://host-from-checkin/",
                node,
                ping_interval=0.02,
                checkin_url=f"http://127.0.0.1:{http_port}/checkin",
            )
        )
        await wait_for(lambda: stats.pongs >= 2)
        assert h.gateway.registry.get(node.device_id) is not None
        stop.set()
        nursery.cancel_scope.cancel()


async def _ready() -> dict[str, str]:
    return {}
