"""The connection gate with real computed scores, through the real gateway and node server.

Two known devices try to connect (v4 AUTH) with ``limits.min_network_score = 65``:

- one was online 1 h of the last 24 (availability 4, paid at score 61) but is well behaved:
  it gets in, since availability cannot gate (a refused device could never raise it);
- one reconnected 12 times in a burst 23 h ago with round trips of 2 s (stability 0, latency
  0: 40 at the gate): it is refused; two hours later that burst has left the window and the
  device has left the scheduled refresh (not seen for 24 h), yet its next attempt has it scored
  again, and the one after that gets in.
"""

from __future__ import annotations

import datetime as dt
import json

import attrs
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

from grass.config import Config
from grass.domain.devices import DeviceType
from grass.ledger.memory import open_memory_ledger
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.nodes.node_client import NodeIdentity, auth_answer, ping_message
from grass.storage.memory import MemoryStorage
from grass.websocket.server import WebSocketServer
from tests.engine.helpers import build
from tests.storage.conftest import T0, add_device, add_user, delta

HOUR = dt.timedelta(hours=1)


@attrs.define
class Live:
    current: Config


def gate_config() -> Config:
    base = Config()
    return attrs.evolve(
        base,
        limits=attrs.evolve(base.limits, min_network_score=65.0),
        score=attrs.evolve(base.score, recheck_interval=60.0),
        # The nodes name their user by id (legacy auth): this is about their scores.
        node=attrs.evolve(base.node, allow_legacy_auth=True),
    )


async def attempt(port: int, node: NodeIdentity, now: float) -> int | None:
    """Connect and AUTH: None when the session is up (a PING is answered), else the close
    code."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        try:
            request = json.loads(await ws.get_message())
            await ws.send_message(auth_answer(request["id"], node, now))
            await ws.send_message(ping_message())
            while json.loads(await ws.get_message()).get("action") != "PONG":
                pass
        except ConnectionClosed as closed:
            return closed.reason.code
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return None


async def test_the_gate_refuses_on_behaviour_only_and_a_refused_device_gets_back(autojump_clock):
    storage = MemoryStorage()
    config = gate_config()
    start = trio.current_time()

    def wall() -> float:
        return T0.timestamp() + (trio.current_time() - start)

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(wall(), dt.UTC)

    user = await add_user(storage)
    kw = {"type": DeviceType.EXTENSION, "first_seen": T0 - 30 * HOUR}
    quiet = await add_device(storage, user, ip="203.0.113.7", last_seen=T0 - 20 * HOUR, **kw)
    burst = T0 - 23 * HOUR
    flapping = await add_device(storage, user, ip="203.0.113.8", last_seen=burst, **kw)
    await storage.uptime.add_uptime(
        [
            delta(quiet, T0 - 21 * HOUR, 3600),
            delta(flapping, burst, 600, reconnects=12, rtt_count=4, rtt_sum_ms=8000),
        ]
    )
    async with trio.open_nursery() as nursery, open_memory_ledger() as ledger:
        engine = build(storage, ledger, config, now)  # type: ignore[arg-type]
        metrics = Metrics()
        gateway = Gateway(
            storage,
            Live(config),
            metrics,
            wall,
            score_of=engine.scores.score_of,
            on_auth=engine.scores.connected,
        )
        server = WebSocketServer(gateway.handle, host="127.0.0.1", port=0, metrics=metrics)
        port = await nursery.start(server.serve)
        await nursery.start(gateway.run)
        await nursery.start(engine.scores.run)

        stored = {
            d.device_id: (await storage.devices.get_device(d.device_id)).score
            for d in (quiet, flapping)
        }
        assert stored[quiet.device_id].value == 61  # availability 4: (160 + 6000) // 100
        assert stored[quiet.device_id].components.availability == 4
        assert stored[flapping.device_id].components.stability == 0
        assert stored[flapping.device_id].components.latency == 0
        assert engine.scores.score_of(quiet.device_id) == 100
        assert engine.scores.score_of(flapping.device_id) == 40

        quiet_node = NodeIdentity(user_id=user.id, device_id=quiet.device_id)
        flapping_node = NodeIdentity(user_id=user.id, device_id=flapping.device_id)
        assert await attempt(port, quiet_node, wall()) is None
        assert await attempt(port, flapping_node, wall()) == 1008

        await trio.sleep(2 * 3600)  # the burst and the device's last sighting: a day old
        assert await attempt(port, flapping_node, wall()) == 1008  # and it asks again
        await trio.sleep(1)
        assert engine.scores.score_of(flapping.device_id) == 100
        assert await attempt(port, flapping_node, wall()) is None
        rescored = (await storage.devices.get_device(flapping.device_id)).score
        assert rescored.components.stability == 100
        server.stop_accepting()
        await gateway.shutdown()
        nursery.cancel_scope.cancel()
