"""48 simulated hours through the real gateway and the real closer, on every backend.

Three users in a referral chain (A referred B, B referred C: C's level-2 referrer is A), five
devices on three IPs, each a real WebSocket client over loopback (its own source address, so
the gateway sees three IPs) that authenticates and PINGs every 120 s for 48 h, on trio's
virtual clock. Beside them run the uptime flusher, the scorer and the bucket closer, as in
``grass.app.run``. The expected totals below are worked out by hand.

Heartbeats every 120 s (not Grass's 60 s) halve the messages while keeping every gap under
the 180 s heartbeat timeout, so the uptime is the same: continuous.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import attrs
import trio
from trio_websocket import wrap_client_stream

from grass.config import Config
from grass.domain.epochs import EpochStatus
from grass.domain.referrals import ReferralStatus
from grass.ledger.memory import open_memory_ledger
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.nodes.node_client import NodeIdentity, auth_answer, ping_message
from grass.running import RunningConfig
from grass.storage.postgres.storage import PostgresStorage
from grass.websocket.server import WebSocketServer
from tests.engine.helpers import build
from tests.storage.conftest import add_user, make_referral

T0 = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
HOURS = 48
PING_EVERY = 120
IP1, IP2, IP3 = "127.0.0.1", "127.0.0.2", "127.0.0.3"
POOL_SIZE = 8  # tests.storage.conftest opens PostgreSQL with max_size=8
JUMP_AFTER = 0.005


def scenario_config() -> Config:
    base = Config()
    return attrs.evolve(
        base,
        # The nodes name their user by id (legacy auth): this is about what they earn.
        node=attrs.evolve(
            base.node,
            heartbeat_timeout=180.0,
            uptime_flush_interval=300.0,
            allow_legacy_auth=True,
        ),
        rates=attrs.evolve(
            base.rates,
            milestone_hours=40,
            epoch_seconds=24 * 3600,
            epoch_genesis=int(T0.timestamp()),
        ),
        closer=attrs.evolve(base.closer, interval=300.0, delay=600.0),
        score=attrs.evolve(base.score, interval=900.0),
    )


async def run_node(port: int, source: str, node: NodeIdentity, done: trio.Event) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        request = json.loads(await ws.get_message())
        await ws.send_message(auth_answer(request["id"], node, 0))

        async def pongs() -> None:
            while True:
                message = json.loads(await ws.get_message())
                if message.get("action") == "PONG":
                    await ws.send_message(
                        json.dumps({"id": message["id"], "origin_action": "PONG"})
                    )

        nursery.start_soon(pongs)
        for _ in range(HOURS * 3600 // PING_EVERY):
            await trio.sleep(PING_EVERY)
            await ws.send_message(ping_message())
        # The node goes away without a close handshake (its stream closes): the server counts
        # its uptime up to the last PING either way.
        nursery.cancel_scope.cancel()
    done.set()


# By hand. Every device is online all the time, alone on its IP or with one other device, with
# no reconnect and a loopback RTT: availability, stability and latency are 100, IP quality is
# 90 on IP1 and IP2 (two devices each) and 100 on IP3, so the scores are 90, 90, 90, 90, 100.
# Per hour (micro-points; 1 h x score/100 x multiplier x 1 000 000):
#   IP1: a1 desktop (2.0) + a2 extension (1.0): pool 0.9 x 3.0 = 2 700 000, shared by equal
#        uptime -> a1 1 350 000, a2 1 350 000                              A: 2 700 000
#   IP2: b1 community (1.25) of B + c1 extension of C: pool 0.9 x 2.25 = 2 025 000
#        -> b1 1 012 500, c1 1 012 500                                     B: 1 012 500
#   IP3: c2 extension alone: 1.0 x 1.0 = 1 000 000                         C: 2 012 500
#   referrals: A 20 % of B = 202 500 and 10 % of C = 201 250; B 20 % of C = 402 500.
# Milestone at 40 h of uptime: C (two devices) after hour 20 (bucket 19), B after hour 40
# (bucket 39): 5 000 points to the referee and 2 500 to its level-1 referrer, once each.
MILESTONE_REFEREE, MILESTONE_REFERRER = 5_000_000_000, 2_500_000_000
EXPECTED = {
    "A": HOURS * (2_700_000 + 202_500 + 201_250) + MILESTONE_REFERRER,  # 2 648 980 000
    "B": HOURS * (1_012_500 + 402_500) + MILESTONE_REFEREE + MILESTONE_REFERRER,  # 7 567 920 000
    "C": HOURS * 2_012_500 + MILESTONE_REFEREE,  # 5 096 600 000
}
# Each 24 h epoch: 24 x (2 700 000 + 1 012 500 + 2 012 500 + 202 500 + 201 250 + 402 500)
# = 156 750 000, plus one milestone pair (7 500 000 000): C's in epoch 0, B's in epoch 1.
EPOCH_POINTS = 24 * 6_531_250 + MILESTONE_REFEREE + MILESTONE_REFERRER  # 7 656 750 000
EPOCH_UPTIME = 5 * 24 * 3600


async def warm_up(storage) -> None:
    """Open every pooled PostgreSQL connection now: a connection opened later, in virtual
    time, could see its own timeout jumped to while the server starts a backend for it."""
    if isinstance(storage, PostgresStorage):
        async with trio.open_nursery() as nursery:
            for _ in range(POOL_SIZE):
                nursery.start_soon(storage.db.run, lambda c: c.fetchval("SELECT pg_sleep(0.05)"))


async def test_48_hours_of_three_users_and_five_devices(open_storage, autojump_clock):
    # The clock jumps only after the run loop has idled this long in real time: long enough
    # for a PostgreSQL answer to arrive first, so a query never "lasts" into its timeout.
    # Set-up and tear-down (connections opened and closed) do not jump at all.
    autojump_clock.autojump_threshold = math.inf
    async with open_storage() as storage:
        await warm_up(storage)
        await scenario(storage, autojump_clock)
        autojump_clock.autojump_threshold = math.inf


async def scenario(storage, clock) -> None:
    """Time stands still until every node is in (a loaded machine could otherwise idle 5 ms
    while they connect, and the clock would jump to the next timer: the nodes would come in
    minutes late), then runs on."""
    config = scenario_config()
    a, b, c = [await add_user(storage) for _ in range(3)]
    await storage.referrals.add_referrals(
        [make_referral(a, b, 1), make_referral(b, c, 1), make_referral(a, c, 2)]
    )
    start = trio.current_time()

    def wall() -> float:
        return T0.timestamp() + (trio.current_time() - start)

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(wall(), dt.UTC)

    devices = [
        (IP1, NodeIdentity(user_id=a.id, device_type="desktop")),
        (IP1, NodeIdentity(user_id=a.id, device_type="extension")),
        (IP2, NodeIdentity(user_id=b.id, device_type="community")),
        (IP2, NodeIdentity(user_id=c.id, device_type="extension")),
        (IP3, NodeIdentity(user_id=c.id, device_type="extension")),
    ]
    authenticated: list[str] = []
    all_in = trio.Event()
    async with open_memory_ledger() as ledger, trio.open_nursery() as nursery:
        engine = build(storage, ledger, config, now)  # type: ignore[arg-type]

        def on_auth(device_id: str) -> None:
            engine.scores.connected(device_id)
            authenticated.append(device_id)
            if len(authenticated) == len(devices):
                all_in.set()

        metrics = Metrics()
        gateway = Gateway(
            storage,
            RunningConfig(config),
            metrics,
            wall,
            score_of=engine.scores.score_of,
            on_auth=on_auth,
        )
        server = WebSocketServer(
            gateway.handle,
            host="127.0.0.1",
            port=0,
            metrics=metrics,
            ssl_context=None,
            max_message_size=config.node.max_message_size,
            connect_timeout=config.node.connect_timeout,
        )
        port = await nursery.start(server.serve)
        await nursery.start(gateway.run)
        await nursery.start(engine.scores.run)
        await nursery.start(engine.closer.run)
        finished = [trio.Event() for _ in devices]
        for (ip, node), done in zip(devices, finished, strict=True):
            nursery.start_soon(run_node, port, ip, node, done)
        await all_in.wait()
        assert trio.current_time() == start
        clock.autojump_threshold = JUMP_AFTER
        for done in finished:
            await done.wait()
        # The scores the last buckets were paid with (the devices have just left: later
        # scores fall as their availability does).
        scores = [(await storage.devices.get_device(n.device_id)).score for _, n in devices]
        assert [s.value for s in scores if s is not None] == [90, 90, 90, 90, 100]
        # The last buckets close `delay` after they end; the epochs right after.
        await trio.sleep(2 * 3600)
        server.stop_accepting()
        await gateway.shutdown()
        nursery.cancel_scope.cancel()

    for _, node in devices:
        stats = await storage.uptime.uptime_stats(device_id=node.device_id)
        assert stats.seconds == HOURS * 3600

    actual = {
        name: (await storage.earnings.earnings_totals(user_id=user.id)).total
        for name, user in zip("ABC", (a, b, c), strict=True)
    }
    balances = {
        name: (await ledger.balance(user.id)).total
        for name, user in zip("ABC", (a, b, c), strict=True)
    }
    print(f"scenario totals: expected {EXPECTED}, actual {actual}, ledger {balances}")
    assert actual == EXPECTED
    assert balances == EXPECTED
    settled = {
        name: (await ledger.balance(user.id)).settled
        for name, user in zip("ABC", (a, b, c), strict=True)
    }
    assert settled == EXPECTED  # both epochs settled on the ledger

    epochs = sorted((await storage.epochs.list_epochs()).items, key=lambda e: e.number)
    assert [(e.number, e.status) for e in epochs[:2]] == [
        (0, EpochStatus.SETTLED),
        (1, EpochStatus.SETTLED),
    ]
    for epoch in epochs[:2]:
        assert epoch.totals is not None
        assert (epoch.totals.points, epoch.totals.uptime_seconds, epoch.totals.users) == (
            EPOCH_POINTS,
            EPOCH_UPTIME,
            3,
        )
    chains = await storage.referrals.referrers_of([b.id, c.id])
    assert {r.status for links in chains.values() for r in links} == {ReferralStatus.QUALIFIED}
