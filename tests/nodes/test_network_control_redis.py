"""Two instances sharing one Redis: presence and the per-instance command channel for real.

Real time (Redis keeps its own clock): intervals are short and every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

from grass.config import Config
from grass.domain.users import Role
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.services.admission import BANNED, PAUSED
from grass.services.node_keys import NodeKeys
from grass.storage.memory import MemoryStorage
from grass.storage.redis import open_redis_state
from grass.wiring.cluster import ClusterServices
from tests.nodes.test_network_control import hold_auth
from tests.nodes.test_session import EPOCH, FakeTransport
from tests.storage.conftest import make_user
from tests.storage.shared_state.conftest import delete_prefix


@pytest.fixture
def redis_prefix(redis_url):
    prefix = f"grass:test:{uuid.uuid4().hex[:12]}:"
    yield redis_url, prefix
    delete_prefix(redis_url, prefix)


@attrs.define
class Instance:
    gateway: Gateway
    cluster: ClusterServices
    nursery: trio.Nursery

    async def join(self, user_id: str, device_id: str | None = None) -> tuple[FakeTransport, str]:
        transport = FakeTransport()
        self.nursery.start_soon(self.gateway.run_session, transport, "203.0.113.5", None)
        device_id = await transport.auth(device_id, user_id=user_id)
        with trio.fail_after(5):
            while self.gateway.registry.get(device_id) is None:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await self.gateway.flusher.flush_now()
        return transport, device_id


@asynccontextmanager
async def instance(
    storage: MemoryStorage, url: str, prefix: str, name: str, nursery: trio.Nursery
) -> AsyncIterator[Instance]:
    base = Config()
    # Nodes name their user by id here (legacy auth): the test is about acting on them.
    config = attrs.evolve(
        base,
        node=attrs.evolve(
            base.node,
            presence_sync_interval=0.05,
            uptime_flush_interval=0.2,
            allow_legacy_auth=True,
        ),
    )
    async with open_redis_state(url, instance_id=name, prefix=prefix) as shared:
        gateway = Gateway(
            storage, RunningConfig(config), Metrics(), lambda: EPOCH + trio.current_time()
        )
        cluster = ClusterServices(gateway, storage, shared)
        async with trio.open_nursery() as tasks:
            await tasks.start(gateway.run)
            await tasks.start(cluster.run)
            yield Instance(gateway, cluster, nursery)
            tasks.cancel_scope.cancel()


async def closed(transport: FakeTransport) -> tuple[int, str]:
    with trio.fail_after(5):
        while transport.closed is None:  # noqa: ASYNC110
            await trio.sleep(0.01)
    return transport.closed


async def test_pause_and_bans_reach_the_other_instance(redis_prefix):
    url, prefix = redis_prefix
    storage = MemoryStorage()
    user, admin = make_user(), make_user(role=Role.ADMIN)
    await storage.users.create_user(user)
    await storage.users.create_user(admin)
    async with trio.open_nursery() as nursery:
        async with (
            instance(storage, url, prefix, "a", nursery) as a,
            instance(storage, url, prefix, "b", nursery) as b,
        ):
            node, device_id = await b.join(user.id)
            with trio.fail_after(5):
                while (await a.cluster.network.get_device(user.id, device_id)).status != "online":  # noqa: ASYNC110 (Redis: polled)
                    await trio.sleep(0.02)
            await a.cluster.network.pause(user.id, device_id)
            assert await closed(node) == (PAUSED, "device paused by its owner")
            await a.cluster.network.resume(user.id, device_id)
            again, _ = await b.join(user.id, device_id)
            await a.cluster.admin.ban_range(admin.id, "203.0.113.0/24")
            assert await closed(again) == (BANNED, "address range banned")
            with trio.fail_after(5):  # b reloaded its ban list when told
                while b.cluster.bans.banned_range("203.0.113.5") is None:  # noqa: ASYNC110
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_a_key_revoked_on_one_instance_refuses_an_auth_in_flight_on_another(redis_prefix):
    """b's node read the key live; a revokes it and tells b through Redis before b registers
    the node: b refuses it. Failed before the fix (the node stayed connected)."""
    url, prefix = redis_prefix
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    async with trio.open_nursery() as nursery:
        async with (
            instance(storage, url, prefix, "a", nursery) as a,
            instance(storage, url, prefix, "b", nursery) as b,
        ):
            keys = NodeKeys(storage, Config, lambda: dt.datetime.now(dt.UTC), a.cluster.control)
            leaked = await keys.create(user.id, "leaked")
            release = hold_auth(storage)
            node = FakeTransport()
            nursery.start_soon(b.gateway.run_session, node, "203.0.113.5", None)
            device_id = await node.auth(user_id=leaked.secret)
            pending = b.gateway.registry._pending
            with trio.fail_after(5):
                while not pending:  # noqa: ASYNC110 (the AUTH reached its device lookup)
                    await trio.sleep(0.01)
            await keys.revoke(user.id, leaked.key.id)
            with trio.fail_after(5):
                while not any(leaked.key.id in p.keys for p in pending):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            release.set()
            assert await closed(node) == (1008, "unknown or revoked node key")
            assert b.gateway.registry.get(device_id) is None
        nursery.cancel_scope.cancel()
