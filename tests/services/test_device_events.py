"""Device events for live dashboards, at the gateway, on virtual time: ``device.online`` once
the device's row is written, ``device.offline`` when it leaves, ``device.updated`` for the
owner's actions; account deletion closes the user's nodes (4007) and forgets them."""

from __future__ import annotations

import json

import trio
import trio.testing

from grass.services.admission import ACCOUNT_DELETED
from grass.storage.inprocess import open_inprocess_state
from grass.storage.shared_state import unframe, user_channel
from tests.nodes.test_network_control import instance, joined, world


async def drain(messages, seconds: float = 0.5) -> list[dict]:
    got = []
    with trio.move_on_after(seconds):
        async for raw in messages:
            event_id, payload = unframe(raw)
            assert event_id is not None  # kept for replay
            got.append(json.loads(payload))
    return got


async def test_online_offline_and_updates_reach_the_owners_channel(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with (
            instance(storage, shared, nursery) as a,
            shared.pubsub.subscribe(user_channel(user.id)) as messages,
        ):
            node = a.connect()
            device_id = await joined(a, node, user.id)  # the row is flushed
            await trio.sleep(2)  # a presence sync
            assert await drain(messages) == [{"type": "device.online", "device_id": device_id}]
            await trio.sleep(5)  # more syncs and full refreshes announce nothing new
            assert await drain(messages) == []
            await a.cluster.network.rename(user.id, device_id, "kitchen")
            await a.cluster.network.pause(user.id, device_id)
            await trio.sleep(2)
            assert await drain(messages) == [
                {"type": "device.updated", "device_id": device_id, "change": "renamed"},
                {"type": "device.updated", "device_id": device_id, "change": "paused"},
                {"type": "device.offline", "device_id": device_id},
            ]
            nursery.cancel_scope.cancel()


async def test_a_device_gone_before_its_row_was_written_is_never_announced(autojump_clock):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with (
            instance(storage, shared, nursery) as a,
            shared.pubsub.subscribe(user_channel(user.id)) as messages,
        ):
            node = a.connect()
            await node.auth(None, user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            await a.cluster.presence.sync()  # held, but its row is not written yet
            node.node_disconnect()
            await trio.sleep(10)
            assert await drain(messages) == []
            nursery.cancel_scope.cancel()


async def test_disconnecting_a_deleted_user_closes_its_nodes_4007_and_forgets_them(
    autojump_clock,
):
    async with open_inprocess_state(instance_id="a") as shared, trio.open_nursery() as nursery:
        storage, user, _ = await world(nursery)
        async with instance(storage, shared, nursery) as a:
            first, second = a.connect(), a.connect("198.51.100.1")
            devices = [await joined(a, n, user.id) for n in (first, second)]
            await storage.users.delete_user(user.id)
            await a.cluster.control.disconnect_user(user.id)
            await trio.testing.wait_all_tasks_blocked()
            assert first.closed == (ACCOUNT_DELETED, "account deleted")
            assert second.closed == (ACCOUNT_DELETED, "account deleted")
            await trio.sleep(10)  # flushes run: nothing writes a row of nobody back
            for device_id in devices:
                assert await storage.devices.find_device(device_id) is None
            again = a.connect()
            await again.auth(devices[0], user_id=user.id)
            await trio.testing.wait_all_tasks_blocked()
            assert again.closed is not None  # an unknown user is refused
            nursery.cancel_scope.cancel()
