"""Who may connect nodes under a user (hardening #13, finding 6): a user id was enough (legacy
auth was on by default, and referrers saw their referees' ids), 100 junk devices held for a
second filled a victim's device cap for good (the cap counted stored rows), and a user id plus
a device id kicked the real node.

The whole gateway on virtual time, over in-memory transports.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

from grass.domain.bearer import hash_token, new_node_key
from grass.domain.users import User
from grass.metrics import Metrics
from grass.nodes import token as tokens
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.storage.memory import MemoryStorage
from tests.nodes.test_gateway import EPOCH, config_with
from tests.nodes.test_session import FakeTransport
from tests.storage.conftest import make_node_key, make_user

HOUR = 3600.0


@attrs.define
class World:
    gateway: Gateway
    storage: MemoryStorage
    nursery: trio.Nursery

    async def user(self) -> tuple[User, str]:
        """A user and a node key of it."""
        user = make_user()
        await self.storage.users.create_user(user)
        key = new_node_key()
        await self.storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(key)))
        return user, key

    async def node(
        self, credential: str, device_id: str | None = None
    ) -> tuple[FakeTransport, str]:
        """A node that answered AUTH with ``credential``; settled (joined or refused)."""
        transport = FakeTransport()
        self.nursery.start_soon(self.gateway.run_session, transport, "203.0.113.5", None)
        device_id = await transport.auth(device_id=device_id, user_id=credential)
        await trio.testing.wait_all_tasks_blocked()
        return transport, device_id

    def joined(self, device_id: str, transport: FakeTransport) -> bool:
        session = self.gateway.registry.get(device_id)
        return session is not None and session.transport is transport


@asynccontextmanager
async def world(**options) -> AsyncIterator[World]:
    storage = MemoryStorage()
    config = config_with(**options)
    gateway = Gateway(
        storage, RunningConfig(config), Metrics(), lambda: EPOCH + trio.current_time()
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        yield World(gateway, storage, nursery)
        nursery.cancel_scope.cancel()


async def test_a_bare_user_id_is_no_proof_by_default(autojump_clock):
    async with world() as w:
        user, key = await w.user()
        refused, device_id = await w.node(user.id)
        assert refused.closed is not None
        assert refused.closed[0] == 1008
        assert "node key" in refused.closed[1]
        assert w.gateway.registry.get(device_id) is None
        assert await w.storage.devices.find_device(device_id) is None
        # Its node key is: the node joins as the key's user.
        node, device_id = await w.node(key)
        assert node.closed is None
        assert w.gateway.registry.get(device_id).user_id == user.id


async def test_legacy_auth_takes_a_user_id_when_the_operator_allows_it(autojump_clock):
    async with world(node={"allow_legacy_auth": True}) as w:
        user, _ = await w.user()
        node, device_id = await w.node(user.id)
        assert node.closed is None
        assert w.gateway.registry.get(device_id).user_id == user.id
        gone, _ = await w.node(make_user().id)
        assert gone.closed[0] == 1008


async def test_unknown_and_revoked_keys_are_refused(autojump_clock):
    async with world() as w:
        user, key = await w.user()
        unknown, _ = await w.node(new_node_key())
        assert unknown.closed == (1008, "unknown or revoked node key")
        (stored,) = (await w.storage.node_keys.list_node_keys(user.id)).items
        await w.storage.node_keys.revoke_node_key(user.id, stored.id, stored.created_at)
        revoked, _ = await w.node(key)
        assert revoked.closed == (1008, "unknown or revoked node key")


async def test_a_device_of_another_user_is_refused_and_its_node_stays(autojump_clock):
    async with world(node={"uptime_flush_interval": 5.0}) as w:
        _, victim_key = await w.user()
        _, attacker_key = await w.user()
        real, device_id = await w.node(victim_key)
        # Connected, not written yet: the registry knows whose it is.
        copy, _ = await w.node(attacker_key, device_id)
        assert copy.closed[0] == 1008
        assert real.closed is None
        assert w.joined(device_id, real)
        # Written: storage knows too.
        await w.gateway.flusher.flush_now()
        copy, _ = await w.node(attacker_key, device_id)
        assert copy.closed[0] == 1008
        assert real.closed is None
        assert w.joined(device_id, real)
        # Its owner's newer connection still replaces it (the same user's device moved).
        newer, _ = await w.node(victim_key, device_id)
        assert real.closed[0] == 4000
        assert w.joined(device_id, newer)


async def test_devices_that_came_and_went_stop_holding_the_cap(autojump_clock):
    cap = 5
    async with world(limits={"max_devices_per_user": cap, "device_active_window": HOUR}) as w:
        _, key = await w.user()
        for _ in range(3 * cap):  # junk devices, each held a moment, then written
            node, _ = await w.node(key)
            if node.closed is None:
                node.node_disconnect()
                await trio.testing.wait_all_tasks_blocked()
            await w.gateway.flusher.flush_now()
        (user_id,) = await _users(w)
        assert await w.storage.devices.count_devices(user_id) == cap
        # Within the window they are active devices: the cap holds.
        within, _ = await w.node(key)
        assert within.closed[0] == 1008
        # Past it, they are history: a new device gets in, up to the cap of live ones.
        await trio.sleep(HOUR + 1)
        fresh = [await w.node(key) for _ in range(cap)]
        assert all(node.closed is None for node, _ in fresh)
        over, _ = await w.node(key)
        assert over.closed[0] == 1008
        # A device already active always gets back in.
        node, device_id = fresh[0]
        node.node_disconnect()
        await trio.testing.wait_all_tasks_blocked()
        back, _ = await w.node(key, device_id)
        assert back.closed is None


async def test_new_device_ids_stop_at_the_stored_device_cap(autojump_clock):
    """Devices that came and went stop holding the active cap, but their rows stay: a node
    key churning new device ids is refused once the user stores that many (1008), while a
    stored device still gets back in."""
    limits = {"max_devices_per_user": 2, "max_stored_devices_per_user": 4}
    async with world(limits={**limits, "device_active_window": HOUR}) as w:
        _, key = await w.user()
        for _ in range(4):
            node, device_id = await w.node(key)
            assert node.closed is None
            node.node_disconnect()
            await trio.testing.wait_all_tasks_blocked()
            await w.gateway.flusher.flush_now()
            await trio.sleep(HOUR + 1)  # gone past the window: not an active device
        (user_id,) = await _users(w)
        assert await w.storage.devices.count_devices(user_id) == 4
        churned, _ = await w.node(key)
        assert churned.closed[0] == 1008
        assert "stored device limit" in churned.closed[1]
        assert await w.storage.devices.count_devices(user_id) == 4
        back, _ = await w.node(key, device_id)
        assert back.closed is None


async def _users(w: World) -> list[str]:
    return [u.id for u in (await w.storage.users.list_users()).items]


@pytest.mark.parametrize("legacy", [False, True])
async def test_a_check_in_token_names_its_user(autojump_clock, legacy):
    """With a v5 token the AUTH answer may carry the node key or the user id (the token is the
    proof); another user's key is a mismatch."""
    async with world(node={"allow_legacy_auth": legacy}) as w:
        user, key = await w.user()
        _, other_key = await w.user()
        for credential, closed in ((key, None), (user.id, None), (other_key, 1008)):
            device_id = str(uuid.uuid4())
            token = w.gateway.issue_token(user.id, device_id, "203.0.113.5")
            claims = tokens.verify(w.gateway.token_key, token, "203.0.113.5", EPOCH)
            transport = FakeTransport()
            w.nursery.start_soon(w.gateway.run_session, transport, "203.0.113.5", claims)
            await transport.auth(device_id=device_id, user_id=credential)
            await trio.testing.wait_all_tasks_blocked()
            assert (transport.closed or (None,))[0] == closed, credential
