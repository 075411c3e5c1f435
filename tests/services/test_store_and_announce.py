"""A revocation stored and then announced to the gateways is one unit: a request cancelled
after the store (its client went away, a shutdown) still announces it, so no node stays
connected with a revoked key, as a banned or deleted user, or on a paused or removed device.
On every storage backend. Each test failed before grass.services.unsplit: the announcement
was cancelled with the request."""

from __future__ import annotations

import pytest
import trio

from grass.config import Config
from grass.domain.users import Role
from grass.errors import StorageNotFound
from grass.services.node_keys import NodeKeys
from tests.services.test_accounts import PW
from tests.services.test_accounts import env as env
from tests.services.test_network_admin import NOW, Control
from tests.services.test_network_admin import admin_service as admin_service
from tests.services.test_network_admin import events as events
from tests.services.test_network_admin import network as network
from tests.services.test_network_admin import presence as presence
from tests.storage.conftest import add_device, add_user


class Cancelling(Control):
    """Records what is announced; the first announcement cancels the request that made it
    (``scope``): the store is done, the announcement not yet."""

    def __init__(self) -> None:
        super().__init__()
        self.scope: trio.CancelScope | None = None

    async def _record(self, what: str, target: str) -> None:
        if self.scope is not None:
            self.scope.cancel()
        await trio.lowlevel.checkpoint()  # a publish awaits: the cancellation lands here
        self.calls.append((what, target))

    async def node_key_revoked(self, user_id: str, key_id: str) -> None:
        await self._record("node_key_revoked", key_id)

    async def pause(self, device_id: str) -> None:
        await self._record("pause", device_id)

    async def remove(self, device_id: str) -> None:
        await self._record("remove", device_id)

    async def ban_user(self, user_id: str) -> None:
        await self._record("ban_user", user_id)

    async def ban_range(self, network: str) -> None:
        await self._record("ban_range", network)

    async def bans_changed(self) -> None:
        await self._record("bans_changed", "")

    async def disconnect_user(self, user_id: str) -> None:
        await self._record("disconnect_user", user_id)


@pytest.fixture
def control():
    return Cancelling()


async def test_a_cancelled_key_revocation_still_disconnects_its_nodes(storage, control):
    user = await add_user(storage)
    keys = NodeKeys(storage, Config, lambda: NOW, control)
    created = await keys.create(user.id, "leaked")
    with trio.CancelScope() as control.scope:
        await keys.revoke(user.id, created.key.id)
    stored = await storage.node_keys.find_node_key(created.key.key_hash)
    assert stored is not None
    assert stored.revoked_at == NOW
    assert control.calls == [("node_key_revoked", created.key.id)]


async def test_a_cancelled_user_ban_still_disconnects_its_nodes(storage, admin_service, control):
    admin = await add_user(storage, role=Role.ADMIN)
    user = await add_user(storage)
    with trio.CancelScope() as control.scope:
        await admin_service.ban_user(admin.id, user.id)
    assert control.calls == [("bans_changed", ""), ("ban_user", user.id)]
    with trio.CancelScope() as control.scope:
        await admin_service.ban_range(admin.id, "198.51.100.0/24")
    assert control.calls[2:] == [("bans_changed", ""), ("ban_range", "198.51.100.0/24")]


async def test_a_cancelled_pause_or_removal_still_reaches_the_device(storage, network, control):
    user = await add_user(storage)
    device = await add_device(storage, user)
    with trio.CancelScope() as control.scope:
        await network.pause(user.id, device.device_id)
    assert control.calls == [("pause", device.device_id)]
    with trio.CancelScope() as control.scope:
        await network.remove(user.id, device.device_id)
    assert control.calls[1:] == [("remove", device.device_id)]
    assert await storage.devices.find_device(device.device_id) is None


async def test_a_cancelled_account_deletion_still_disconnects_its_nodes(env):
    user = await env.accounts.register("ann@example.com", PW, None)
    nodes = Cancelling()
    env.accounts._nodes = nodes
    with trio.CancelScope() as nodes.scope:
        await env.accounts.delete_account(user.id, PW)
    assert nodes.calls == [("disconnect_user", user.id)]
    with pytest.raises(StorageNotFound):
        await env.storage.users.get_user(user.id)
