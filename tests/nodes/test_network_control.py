"""The network and admin services at the gateway (grass.wiring.cluster), on virtual time:
pausing, removing and kicking live nodes (also when another instance holds them), banned ranges
and users refused.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
import trio.testing

from grass.config import Config
from grass.domain.users import Role
from grass.metrics import Metrics
from grass.nodes.control import KICKED, NODE_KEY_REVOKED, REMOVED
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.services.admission import BANNED, PAUSED
from grass.services.node_keys import NodeKeys
from grass.storage.inprocess import open_inprocess_state
from grass.storage.memory import MemoryStorage
from grass.storage.shared_state import SharedState
from grass.wiring.cluster import ClusterServices
from tests.nodes.test_session import EPOCH, FakeTransport
from tests.storage.conftest import make_user


class FakeRequest:
    """An upgrade request that is never accepted here: it records the refusal."""

    def __init__(self, ip: str, path: str = "/") -> None:
        self.remote_address = ip
        self.headers: list[tuple[bytes, bytes]] = []
        self.path = path
        self.deadline = math.inf
        self.rejected: tuple[int, dict] | None = None

    def header(self, name: str) -> str | None:
        return None

    async def accept(self):
        raise AssertionError("the upgrade was accepted")

    async def reject(self, status: int, body: dict) -> None:
        self.rejected = (status, body)


@attrs.define
class Instance:
    gateway: Gateway
    cluster: ClusterServices
    nursery: trio.Nursery

    def connect(self, ip: str = "203.0.113.5") -> FakeTransport:
        transport = FakeTransport()
        self.nursery.start_soon(self.gateway.run_session, transport, ip, None)
        return transport


@asynccontextmanager
async def instance(
    storage: MemoryStorage, shared: SharedState, nursery: trio.Nursery, *, legacy: bool = True
) -> AsyncIterator[Instance]:
    # Nodes name their user by id here (legacy auth): these tests are about acting on them.
    base = Config()
    config = attrs.evolve(base, node=attrs.evolve(base.node, allow_legacy_auth=legacy))
    gateway = Gateway(
        storage, RunningConfig(config), Metrics(), lambda: EPOCH + trio.current_time()
    )
    cluster = ClusterServices(gateway, storage, shared)
    await nursery.start(gateway.run)
    await nursery.start(cluster.run)
    yield Instance(gateway, cluster, nursery)


async def world(nursery: trio.Nursery):
    storage = MemoryStorage()
    user = make_user()
    admin = make_user(role=Role.ADMIN)
    await storage.users.create_user(user)
    await storage.users.create_user(admin)
    return storage, user, admin


async def joined(
    inst: Instance, transport: FakeTransport, user_id: str, device_id: str | None = None
) -> str:
    device_id = await transport.auth(device_id, user_id=user_id)
    await trio.testing.wait_all_tasks_blocked()
    assert inst.gateway.registry.get(device_id) is not None
    await inst.gateway.flusher.flush_now()  # the device row exists from here on
    return device_id


async def test_pausing_a_connected_device_closes_it_4001_and_refuses_it(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            node = a.connect()
            device_id = await joined(a, node, user.id)
            view = await a.cluster.network.pause(user.id, device_id)
            assert view.status == "paused"
            await trio.testing.wait_all_tasks_blocked()
            assert node.closed == (PAUSED, "device paused by its owner")
            again = a.connect()
            await again.auth(device_id, user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            assert again.closed is not None
            assert again.closed[0] == PAUSED
            await a.cluster.network.resume(user.id, device_id)
            back = a.connect()
            await joined(a, back, user.id, device_id)
            assert back.closed is None
            nursery.cancel_scope.cancel()


async def test_a_banned_range_is_refused_403_and_its_nodes_closed(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, admin = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            inside = a.connect("203.0.113.5")
            outside = a.connect("198.51.100.1")
            await joined(a, inside, user.id)
            await joined(a, outside, user.id)
            ban = await a.cluster.admin.ban_range(admin.id, "203.0.113.0/24", reason="abuse")
            await trio.testing.wait_all_tasks_blocked()
            assert inside.closed == (BANNED, "address range banned")
            assert outside.closed is None
            request = FakeRequest("203.0.113.77")
            await a.gateway.handle(request)
            assert request.rejected is not None
            status, body = request.rejected
            assert status == 403
            assert body["error"]["code"] == "address_banned"
            mapped = FakeRequest("::ffff:203.0.113.8")  # an IPv4 peer on a dual-stack socket
            await a.gateway.handle(mapped)
            assert mapped.rejected is not None
            assert mapped.rejected[0] == 403
            await a.cluster.admin.lift_ban(admin.id, ban.id)
            served = a.connect("203.0.113.5")
            await joined(a, served, user.id)
            assert served.closed is None
            log = await a.cluster.admin.audit_log(admin.id)
            assert [e.action.value for e in log.items] == ["ip_range.unban", "ip_range.ban"]
            nursery.cancel_scope.cancel()


async def test_a_banned_user_is_closed_and_refused_at_auth(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, admin = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            node = a.connect()
            device_id = await joined(a, node, user.id)
            await a.cluster.admin.ban_user(admin.id, user.id, reason="fraud")
            await trio.testing.wait_all_tasks_blocked()
            assert node.closed == (BANNED, "user banned")
            again = a.connect()
            await again.auth(device_id, user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            assert again.closed is not None
            assert again.closed[0] == BANNED
            assert (await storage.users.get_user(user.id)).status.value == "banned"
            nursery.cancel_scope.cancel()


async def test_removing_a_device_disconnects_it_4004_and_it_stays_removed(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            node = a.connect()
            device_id = await joined(a, node, user.id)
            await trio.sleep(30)
            node.ping_()
            await a.cluster.network.remove(user.id, device_id)
            await trio.testing.wait_all_tasks_blocked()
            assert node.closed == (REMOVED, "device removed by its owner")
            await trio.sleep(10)  # flushes run: the closed session must not write the row back
            assert await storage.devices.find_device(device_id) is None
            nursery.cancel_scope.cancel()


async def test_commands_reach_the_instance_holding_the_device(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared_a, trio.open_nursery() as nursery:
        shared_b = attrs.evolve(shared_a, instance_id="b")  # same presence and pub/sub
        storage, user, admin = await world(nursery)
        async with (
            instance(storage, shared_a, nursery) as a,
            instance(storage, shared_b, nursery) as b,
        ):
            on_b = b.connect()
            device_id = await joined(b, on_b, user.id)
            await trio.sleep(2)  # a presence sync
            assert await shared_a.presence.lookup([device_id]) == {device_id: "b"}
            view = await a.cluster.network.get_device(user.id, device_id)
            assert view.status == "online"
            listed = await a.cluster.admin.list_connections(admin.id)
            assert [(c.device_id, c.instance) for c in listed.items] == [(device_id, "b")]
            await a.cluster.admin.kick(admin.id, device_id)
            await trio.testing.wait_all_tasks_blocked()
            assert on_b.closed == (KICKED, "disconnected by an operator")
            again = b.connect()
            await joined(b, again, user.id, device_id)
            await trio.sleep(2)
            await a.cluster.network.pause(user.id, device_id)
            await trio.testing.wait_all_tasks_blocked()
            assert again.closed == (PAUSED, "device paused by its owner")
            await trio.sleep(2)
            assert await shared_a.presence.lookup([device_id]) == {}
            assert (await a.cluster.network.summary(user.id)).devices_paused == 1
            nursery.cancel_scope.cancel()


async def test_a_v5_token_of_a_paused_device_or_banned_user_is_refused_403(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, admin = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            node = a.connect()
            device_id = await joined(a, node, user.id)
            await a.cluster.network.pause(user.id, device_id)
            ip = "203.0.113.5"
            token = a.gateway.issue_token(user.id, device_id, ip)
            request = FakeRequest(ip, f"/?token={token}")
            await a.gateway.handle(request)
            assert request.rejected is not None
            assert request.rejected[0] == 403
            assert request.rejected[1]["error"]["code"] == "device_paused"
            await a.cluster.network.resume(user.id, device_id)
            await a.cluster.admin.ban_user(admin.id, user.id)
            request = FakeRequest(ip, f"/?token={a.gateway.issue_token(user.id, device_id, ip)}")
            await a.gateway.handle(request)
            assert request.rejected is not None
            assert request.rejected[1]["error"]["code"] == "user_banned"
            nursery.cancel_scope.cancel()


async def test_revoking_a_node_key_closes_its_nodes_4008_on_every_instance(autojump_clock):
    """A leaked key's nodes go when its owner revokes it; the owner's other keys' stay."""
    async with open_inprocess_state(instance_id="a") as shared_a, trio.open_nursery() as nursery:
        shared_b = attrs.evolve(shared_a, instance_id="b")
        storage, user, _ = await world(nursery)
        async with (
            instance(storage, shared_a, nursery, legacy=False) as a,
            instance(storage, shared_b, nursery, legacy=False) as b,
        ):
            keys = NodeKeys(storage, Config, lambda: dt.datetime.now(dt.UTC), a.cluster.control)
            leaked, kept = await keys.create(user.id, "leaked"), await keys.create(user.id, "kept")
            on_a, on_b, other = a.connect(), b.connect(), b.connect()
            await joined(a, on_a, leaked.secret)
            await joined(b, on_b, leaked.secret)
            await joined(b, other, kept.secret)
            await keys.revoke(user.id, leaked.key.id)
            await trio.testing.wait_all_tasks_blocked()
            assert on_a.closed == (NODE_KEY_REVOKED, "node key revoked")
            assert on_b.closed == (NODE_KEY_REVOKED, "node key revoked")
            assert other.closed is None
            again = a.connect()
            await again.auth(user_id=leaked.secret)
            await trio.testing.wait_all_tasks_blocked()
            assert again.closed == (1008, "unknown or revoked node key")
            nursery.cancel_scope.cancel()


def hold_auth(storage: MemoryStorage, auths: int = 1, at: str = "find_device") -> trio.Event:
    """Stop the next ``auths`` AUTHs between reading their credential and registering their
    session (at their device lookup, or ``at`` another device store call) until the returned
    event is set."""
    release = trio.Event()
    call = getattr(storage.devices, at)
    left = [auths]

    async def held(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            await release.wait()
        return await call(*args, **kwargs)

    setattr(storage.devices, at, held)
    return release


async def test_a_key_revoked_while_its_node_authenticates_does_not_connect_it(autojump_clock):
    """The AUTH read the key live; the revocation found no session to close yet (it was not
    registered): the AUTH is refused when it would register, here and on another instance.
    Failed before the fix: both nodes stayed connected with the revoked key."""
    async with open_inprocess_state(instance_id="a") as shared_a, trio.open_nursery() as nursery:
        shared_b = attrs.evolve(shared_a, instance_id="b")
        storage, user, _ = await world(nursery)
        async with (
            instance(storage, shared_a, nursery, legacy=False) as a,
            instance(storage, shared_b, nursery, legacy=False) as b,
        ):
            keys = NodeKeys(storage, Config, lambda: dt.datetime.now(dt.UTC), a.cluster.control)
            leaked = await keys.create(user.id, "leaked")
            release = hold_auth(storage, auths=2)
            on_a, on_b = a.connect(), b.connect()
            here, there = (
                await on_a.auth(user_id=leaked.secret),
                await on_b.auth(user_id=leaked.secret),
            )
            await trio.testing.wait_all_tasks_blocked()
            await keys.revoke(user.id, leaked.key.id)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert on_a.closed == (1008, "unknown or revoked node key")
            assert on_b.closed == (1008, "unknown or revoked node key")
            assert a.gateway.registry.get(here) is None
            assert b.gateway.registry.get(there) is None
            nursery.cancel_scope.cancel()


async def test_a_user_banned_while_its_node_authenticates_does_not_connect_it(autojump_clock):
    """The same window for a ban: the node read the user as not banned. Failed before the fix."""
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, admin = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            release = hold_auth(storage)
            node = a.connect()
            device_id = await node.auth(user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            await a.cluster.admin.ban_user(admin.id, user.id)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert node.closed == (BANNED, "user banned")
            assert a.gateway.registry.get(device_id) is None
            nursery.cancel_scope.cancel()


async def test_a_device_paused_while_its_node_authenticates_does_not_connect_it(autojump_clock):
    """The node's device was read unpaused; the pause found no session yet. Failed before the
    device was noted on AUTHs in flight."""
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            first = a.connect()
            device_id = await joined(a, first, user.id)
            first.node_disconnect()
            await trio.testing.wait_all_tasks_blocked()
            # After its device was read unpaused.
            release = hold_auth(storage, at="count_recent_devices")
            node = a.connect()
            await node.auth(device_id, user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            await a.cluster.network.pause(user.id, device_id)
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert node.closed == (PAUSED, "device paused by its owner")
            assert a.gateway.registry.get(device_id) is None
            nursery.cancel_scope.cancel()
