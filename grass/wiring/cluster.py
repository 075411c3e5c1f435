"""The services that act on nodes across the cluster, built over one gateway: the part of the
services container (grass.wiring) that the network and admin routes stand on.

:class:`ClusterServices` holds the network and admin services (for the HTTP routes), what they
act through (the node command channel and the presence map: grass.nodes.control; bans and
feature flags, reloaded on every instance; the live events of devices, online and offline,
published with each presence sync), and installs the ban checks as gateway hooks
(grass.services.admission.BanChecks). ``run`` runs their background loops."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import trio

from grass import logs
from grass.domain import scoring
from grass.nodes.control import ClusterControl, PresenceKeeper
from grass.nodes.gateway import Gateway
from grass.services.admin import AdminService
from grass.services.admission import BanChecks
from grass.services.bans import BanGuard
from grass.services.flags import FeatureFlags
from grass.services.live import LiveEvents
from grass.services.network import NetworkService, utc_now
from grass.storage.abc import Storage
from grass.storage.shared_state import SharedState

log = logs.get(__name__)


class ClusterServices:
    def __init__(
        self,
        gateway: Gateway,
        storage: Storage,
        shared: SharedState,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        running = gateway.running
        self.bans = BanGuard(
            storage.bans, interval=lambda: running.current.node.ban_reload_interval
        )
        self.flags = FeatureFlags(storage.flags, lambda: running.current.features)
        self.control = ClusterControl(
            gateway.registry,
            shared,
            forget=gateway.flusher.forget,
            reloads={"bans": self.bans.reload, "flags": self.flags.reload},
        )
        self.events = LiveEvents(shared.events, shared.pubsub)
        self.presence = PresenceKeeper(
            gateway.registry,
            shared,
            sync_interval=lambda: running.current.node.presence_sync_interval,
            refresh_interval=lambda: running.current.node.presence_refresh_interval,
            events=self.events,
        )
        ban_checks = BanChecks(self.bans, storage.devices, storage.users)
        gateway.upgrade_checks.append(ban_checks.at_upgrade)
        gateway.auth_checks.append(ban_checks.at_auth)
        self.network = NetworkService(
            storage,
            shared.presence,
            self.control,
            clock,
            events=self.events,
            score_window=lambda: scoring.score_params(running.current.score).window,
        )
        self.admin = AdminService(
            storage,
            self.control,
            shared.presence,
            self.bans,
            self.flags,
            self.events,
            clock,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load bans and flag overrides, then serve the command channel and the presence map;
        ready once all of them are."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.bans.run)
            await self.flags.reload()
            await nursery.start(self.control.run)
            await nursery.start(self.presence.run)
            task_status.started()

    async def stop(self) -> None:
        """At shutdown, after the sessions closed: withdraw this instance's presence entries."""
        with trio.move_on_after(2) as scope:
            scope.shield = True
            try:
                await self.presence.withdraw()
            except Exception as exc:  # the entries expire by themselves anyway
                log.warning("presence withdrawal failed", error=str(exc))
