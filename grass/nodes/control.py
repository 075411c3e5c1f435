"""Acting on live node connections wherever they are, and keeping the presence map.

Every instance publishes which devices it holds in the shared presence map
(:class:`PresenceKeeper`) and listens on two pub/sub channels: its own
(``nodes:<instance id>``), for commands about one device, and ``nodes:all``, for commands about
a user, an IP range, or a reload. :class:`ClusterControl` (the services'
:class:`~grass.services.network.NodeControl`) closes a device held here directly, otherwise
looks it up in the presence map and sends the command to its instance — or to every instance
when the map does not know it yet (it lags joins by up to one sync interval).

Close codes added here (the session's own are in ``grass.nodes.session``/``registry``; 4006 and
4007 are grass.services.admission's, which refuses an AUTH with them too):

====  ======================================================================================
4004  removed: the owner removed the device
4005  kicked: an operator disconnected it
4006  banned: its user or its address range was banned
4007  account deleted: its user deleted their account
4008  node key revoked: the node key it authenticated with was revoked by its owner
====  ======================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from grass import jsontext, logs
from grass.domain.addresses import in_networks
from grass.domain.admin import parse_network
from grass.nodes.registry import Registry
from grass.services.admission import ACCOUNT_DELETED, BANNED, PAUSED
from grass.services.live import DEVICE_OFFLINE, DEVICE_ONLINE, LiveEvents
from grass.storage.shared_state import SharedState, SubscriptionOverflow

log = logs.get(__name__)

REMOVED = 4004
KICKED = 4005
NODE_KEY_REVOKED = 4008

ALL = "nodes:all"

Reload = Callable[[], Awaitable[None]]


def instance_channel(instance_id: str) -> str:
    return f"nodes:{instance_id}"


class ClusterControl:
    def __init__(
        self,
        registry: Registry,
        shared: SharedState,
        *,
        forget: Callable[[str], None] = lambda _: None,
        reloads: dict[str, Reload] | None = None,
    ) -> None:
        self._registry = registry
        self._shared = shared
        self._forget = forget
        #: What ``bans_changed``/``flags_changed`` make every instance run ("bans", "flags").
        self.reloads: dict[str, Reload] = dict(reloads or {})

    # -- NodeControl --------------------------------------------------------------------------

    async def pause(self, device_id: str) -> None:
        await self._device(device_id, PAUSED, "device paused by its owner")

    async def remove(self, device_id: str) -> None:
        await self._device(device_id, REMOVED, "device removed by its owner", forget=True)

    async def kick(self, device_id: str) -> None:
        await self._device(device_id, KICKED, "disconnected by an operator")

    async def ban_user(self, user_id: str) -> None:
        await self._everywhere({"op": "user", "user_id": user_id})

    async def disconnect_user(self, user_id: str) -> None:
        await self._everywhere({"op": "user", "user_id": user_id, "deleted": True})

    async def node_key_revoked(self, user_id: str, key_id: str) -> None:
        await self._everywhere({"op": "node_key", "user_id": user_id, "key_id": key_id})

    async def ban_range(self, network: str) -> None:
        parse_network(network)  # refuse a bad range here, not on every instance
        await self._everywhere({"op": "range", "network": network})

    async def bans_changed(self) -> None:
        await self._everywhere({"op": "reload", "what": "bans"})

    async def flags_changed(self) -> None:
        await self._everywhere({"op": "reload", "what": "flags"})

    # -- the listener -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply the commands other instances send; re-subscribes after an overflow."""
        own = instance_channel(self._shared.instance_id)
        started = False
        while True:
            try:
                async with (
                    self._shared.pubsub.subscribe(own) as mine,
                    self._shared.pubsub.subscribe(ALL) as everyone,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(self._listen, mine)
                    nursery.start_soon(self._listen, everyone)
                    if not started:
                        started = True
                        task_status.started()
            except* SubscriptionOverflow:
                log.warning("node command channel overflowed; resubscribing")

    async def _listen(self, messages: Any) -> None:
        async for raw in messages:
            try:
                command = jsontext.loads(raw, what="command")
                await self.apply(command)
            except Exception:
                log.exception("node command failed", command=raw[:200])

    async def apply(self, command: dict[str, Any]) -> None:
        """Carry out one command on this instance's sessions."""
        op = command.get("op")
        if op == "device":
            # An AUTH of the device still awaiting storage is refused when it would register.
            self._registry.device_closed(command["device_id"], command["code"], command["reason"])
            self._close_local(command["device_id"], command["code"], command["reason"])
            if command.get("forget"):
                self._forget(command["device_id"])
        elif op == "user":
            self._close_user(command["user_id"], deleted=bool(command.get("deleted")))
        elif op == "node_key":
            self._close_key(command["user_id"], command["key_id"])
        elif op == "range":
            network = parse_network(command["network"])
            for session in self._registry:
                if session.device_id is not None and in_networks(session.ip, (network,)):
                    session.close(BANNED, "address range banned")
        elif op == "reload":
            reload = self.reloads.get(command["what"])
            if reload is not None:
                await reload()
        else:
            log.warning("unknown node command", op=op)

    # -- helpers ------------------------------------------------------------------------------

    def _close_user(self, user_id: str, *, deleted: bool) -> None:
        code, reason = (ACCOUNT_DELETED, "account deleted") if deleted else (BANNED, "user banned")
        # An AUTH of the user still awaiting storage is refused when it would register.
        self._registry.user_closed(user_id, code, reason)
        for device_id in self._registry.devices_of(user_id):
            self._close_local(device_id, code, reason)
            if deleted:
                self._forget(device_id)  # its last flush would write rows of nobody

    def _close_key(self, user_id: str, key_id: str) -> None:
        # An AUTH with the key still awaiting storage is refused when it would register.
        self._registry.key_revoked(key_id)
        for device_id in self._registry.devices_of(user_id):
            accrual = getattr(self._registry.get(device_id), "accrual", None)
            if accrual is not None and accrual.key_id == key_id:
                self._close_local(device_id, NODE_KEY_REVOKED, "node key revoked")

    def _close_local(self, device_id: str, code: int, reason: str) -> bool:
        session = self._registry.get(device_id)
        if session is None:
            return False
        session.close(code, reason)
        return True

    async def _device(
        self, device_id: str, code: int, reason: str, *, forget: bool = False
    ) -> None:
        command = {"op": "device", "device_id": device_id, "code": code, "reason": reason}
        if forget:
            command["forget"] = True
        if self._registry.get(device_id) is not None:
            await self.apply(command)
            return
        where = (await self._shared.presence.lookup([device_id])).get(device_id)
        if where is None:
            # Not in the map yet (it lags joins by a sync interval): ask every instance.
            await self._everywhere(command)
        elif where == self._shared.instance_id:
            await self.apply(command)  # it left this instance meanwhile: drop what it left
        else:
            await self._publish(instance_channel(where), command)

    async def _everywhere(self, command: dict[str, Any]) -> None:
        # This instance's own subscription delivers it here too.
        await self._publish(ALL, command)

    async def _publish(self, channel: str, command: dict[str, Any]) -> None:
        await self._shared.pubsub.publish(channel, json.dumps(command).encode())


class PresenceKeeper:
    """Publishes the devices this instance holds: joins and leaves every ``sync_interval``,
    and a full refresh (entries live ``3 * refresh_interval``) so a crashed instance's entries
    expire by themselves.

    The same joins and leaves go to their owners' live dashboards (``device.online`` and
    ``device.offline``, one batch per sync). A device is announced online once the flusher has
    written its row, so that the dashboard finds it when it fetches it; one that connects and
    leaves before that is not announced at all.
    """

    def __init__(
        self,
        registry: Registry,
        shared: SharedState,
        *,
        sync_interval: Callable[[], float],
        refresh_interval: Callable[[], float],
        events: LiveEvents | None = None,
    ) -> None:
        self._registry = registry
        self._shared = shared
        self._sync = sync_interval
        self._refresh = refresh_interval
        self._events = events
        self._published: set[str] = set()
        #: Devices announced online, with their owner (to announce the leave once the
        #: session is gone).
        self._announced: dict[str, str] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        refreshed_at = -float("inf")
        while True:
            await trio.sleep(self._sync())
            full = trio.current_time() - refreshed_at >= self._refresh()
            try:
                await self.sync(full=full)
            except Exception as exc:  # Redis down: the next interval retries
                log.warning("presence sync failed", error=str(exc))
                continue
            if full:
                refreshed_at = trio.current_time()

    async def sync(self, *, full: bool = False) -> None:
        held = {s.device_id for s in self._registry if s.device_id is not None}
        joined = held if full else held - self._published
        left = self._published - held
        ttl = 3 * self._refresh()
        instance = self._shared.instance_id
        if joined:
            await self._shared.presence.update_many(dict.fromkeys(joined, instance), ttl=ttl)
        if left:
            await self._shared.presence.remove_many(left, instance_id=instance)
        self._published = held
        await self._announce()

    async def _announce(self) -> None:
        if self._events is None:
            return
        saved = {
            s.device_id: s.user_id
            for s in self._registry
            if s.device_id is not None
            and s.user_id is not None
            and s.accrual is not None
            and s.accrual.saved
        }
        came = sorted(set(saved) - set(self._announced))
        went = sorted(d for d in self._announced if d not in self._published)
        events = [(saved[d], {"type": DEVICE_ONLINE, "device_id": d}) for d in came]
        events += [(self._announced[d], {"type": DEVICE_OFFLINE, "device_id": d}) for d in went]
        for d in went:
            del self._announced[d]
        self._announced.update((d, saved[d]) for d in came)
        if events:
            await self._events.publish(events)  # best effort: it logs a failure itself

    async def withdraw(self) -> None:
        """At shutdown: this instance holds nothing any more."""
        if self._published:
            await self._shared.presence.remove_many(
                self._published, instance_id=self._shared.instance_id
            )
            self._published = set()
