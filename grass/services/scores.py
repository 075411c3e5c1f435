"""Network scores: computed for every recently seen device on a schedule, and for a device when
it connects; kept in a small cache the gateway reads synchronously (``score_of``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Protocol

import trio

from grass import logs
from grass.config import Config
from grass.domain import scoring
from grass.domain.score import NetworkScore
from grass.storage.abc import DeviceStore, UptimeStore
from grass.storage.payouts import PayoutStore

log = logs.get(__name__)


class ScoreStores(Protocol):
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def uptime(self) -> UptimeStore: ...
    @property
    def payouts(self) -> PayoutStore: ...


class ScoreService:
    def __init__(
        self,
        stores: ScoreStores,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._stores = stores
        self._config = config
        self._clock = clock
        self._cache: dict[str, int] = {}
        self._pending: set[str] = set()
        self._retry: set[str] = set()
        self._wake = trio.Event()

    # -- the gateway's side -------------------------------------------------------------------

    def score_of(self, device_id: str) -> float | None:
        """The device's latest score, None when it was never scored (new devices get in)."""
        return self._cache.get(device_id)

    def connected(self, device_id: str) -> None:
        """A device authenticated: score it again soon (its IP's device count changed too)."""
        self._pending.add(device_id)
        self._wake.set()

    # -- computing ------------------------------------------------------------------------------

    async def score_devices(
        self, device_ids: Collection[str] | None, at: dt.datetime
    ) -> dict[str, NetworkScore]:
        """Score the given devices (None: every device seen in the window) as of ``at``, store
        the scores and return them."""
        config = self._config()
        networks = scoring.parse_cidrs(config.score.datacenter_cidrs)
        unwritten = int(config.node.heartbeat_timeout + config.node.uptime_flush_interval)
        windows = await self._stores.payouts.device_windows(
            since=at - scoring.WINDOW, device_ids=device_ids
        )
        ips = {w.ip for w in windows if w.ip is not None}
        crowd = await self._stores.devices.count_devices_on_ips(ips) if ips else {}
        scores = {}
        for w in windows:
            data = scoring.ScoreInput(
                stats=w.stats,
                expected_seconds=scoring.expected_seconds(
                    w.first_seen, at, unwritten_seconds=unwritten
                ),
                datacenter=w.ip is not None and scoring.is_datacenter(w.ip, networks),
                devices_on_ip=crowd.get(w.ip, 1) if w.ip is not None else 1,
            )
            scores[w.device_id] = scoring.score(data, at)
        if scores:
            await self._stores.devices.set_scores(scores)
            self._cache.update((d, s.value) for d, s in scores.items())
        return scores

    async def ip_scores(self, user_id: str, at: dt.datetime) -> dict[str, NetworkScore]:
        """Each of the user's IPs scored from its devices' latest scores (docs/score.md)."""
        out: dict[str, NetworkScore] = {}
        since = at - scoring.WINDOW
        for ip, device_ids in (await self._stores.devices.user_ips(user_id)).items():
            parts = []
            for device_id in device_ids:
                device = await self._stores.devices.find_device(device_id)
                if device is None or device.score is None:
                    continue
                stats = await self._stores.uptime.uptime_stats(device_id=device_id, since=since)
                parts.append((device.score, stats.seconds))
            if parts:
                out[ip] = scoring.ip_score(parts, at)
        return out

    # -- the job ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Score everyone now and every ``score.interval``; connected devices in between."""
        await self._refresh_all()
        task_status.started()
        next_all = trio.current_time() + self._config().score.interval
        retried: set[str] = set()
        while True:
            with trio.move_on_at(next_all):
                await self._wake.wait()
            self._wake = trio.Event()
            if trio.current_time() >= next_all:
                await self._refresh_all()
                next_all = trio.current_time() + self._config().score.interval
            pending, self._pending = self._pending, set()
            if pending:
                scored = await self._safely(pending)
                # A new device's row is written by the next uptime flush: try it once more
                # then (a device missing twice was removed meanwhile).
                self._retry |= pending - scored.keys() - retried
            retried = set()
            if self._retry and not self._pending:
                await trio.sleep(self._config().node.uptime_flush_interval)
                retried, self._retry = self._retry, set()
                self._pending |= retried
                self._wake.set()

    async def _refresh_all(self) -> None:
        await self._safely(None)

    async def _safely(self, device_ids: Collection[str] | None) -> dict[str, NetworkScore]:
        try:
            return await self.score_devices(device_ids, self._clock())
        except Exception as exc:  # storage down: the next round tries again
            log.warning("scoring failed", error=str(exc))
            if device_ids is not None:
                self._retry.update(device_ids)
            return {}
