"""Network scores: computed for every recently seen device on a schedule, and for a device when
it connects; the gateway reads each device's admission value synchronously (``score_of``).

The gate compares :func:`grass.domain.scoring.admission` with ``limits.min_network_score``, not
the score the device is paid at: a refused device could never raise its availability, so a
gate on availability would refuse it for ever (docs/score.md, "Who may connect"). What does
gate it (reconnects, round trips) recovers as the window slides, provided someone scores it
again: a refused device is not connected, and once it is a window away it has left the
scheduled refresh. So ``score_of`` asks for a new score whenever it hands out one below the
minimum (at most every ``score.recheck_interval``) or an old one, and forgets a score computed a
window ago or more (it says nothing about the device any more: the device gets in and is
scored at connect, as a new one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Protocol

import attrs
import trio

from grass import logs
from grass.config import Config
from grass.domain import scoring
from grass.domain.score import NetworkScore
from grass.storage.devices import DeviceStore
from grass.storage.payouts import PayoutStore

log = logs.get(__name__)


class ScoreStores(Protocol):
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def payouts(self) -> PayoutStore: ...


@attrs.frozen(slots=True)
class _Admission:
    value: int
    computed_at: dt.datetime


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
        self._admission: dict[str, _Admission] = {}
        self._rechecked: dict[str, dt.datetime] = {}
        self._pending: set[str] = set()
        self._retry: set[str] = set()
        self._wake = trio.Event()

    def params(self) -> scoring.ScoreParams:
        return scoring.score_params(self._config().score)

    # -- the gateway's side -------------------------------------------------------------------

    def score_of(self, device_id: str) -> float | None:
        """The device's admission value (None: not scored within a window; it gets in).

        Synchronous (the gateway calls it while answering an upgrade): a value below the
        minimum, or older than ``score.interval``, is handed out as it is and a new one is
        computed in the background for the device's next attempt."""
        entry = self._admission.get(device_id)
        if entry is None:
            return None
        config = self._config()
        now = self._clock()
        age = now - entry.computed_at
        if age >= dt.timedelta(seconds=config.score.window):
            del self._admission[device_id]
            self._request(device_id)
            return None
        refused = entry.value < config.limits.min_network_score
        last = self._rechecked.get(device_id, entry.computed_at)
        recheck = dt.timedelta(seconds=config.score.recheck_interval)
        if (refused and now - last >= recheck) or age >= dt.timedelta(
            seconds=config.score.interval
        ):
            self._rechecked[device_id] = now
            self._request(device_id)
        return entry.value

    def connected(self, device_id: str) -> None:
        """A device authenticated: score it again soon (its IP's device count changed too)."""
        self._request(device_id)

    def _request(self, device_id: str) -> None:
        self._pending.add(device_id)
        self._wake.set()

    # -- computing ------------------------------------------------------------------------------

    async def score_devices(
        self, device_ids: Collection[str] | None, at: dt.datetime
    ) -> dict[str, NetworkScore]:
        """Score the given devices (None: every device seen in the window) as of ``at``, store
        the scores and return them."""
        config = self._config()
        params = self.params()
        since = at - params.window
        networks = scoring.parse_cidrs(config.score.datacenter_cidrs)
        unwritten = int(config.node.heartbeat_timeout + config.node.uptime_flush_interval)
        windows = await self._stores.payouts.device_windows(since=since, device_ids=device_ids)
        ips = {w.ip for w in windows if w.ip is not None}
        devices = self._stores.devices
        crowd = await devices.count_devices_on_ips(ips, since=since) if ips else {}
        scores = {}
        for w in windows:
            data = scoring.ScoreInput(
                stats=w.stats,
                expected_seconds=scoring.expected_seconds(
                    w.first_seen, at, unwritten_seconds=unwritten, params=params
                ),
                datacenter=w.ip is not None and scoring.is_datacenter(w.ip, networks),
                devices_on_ip=crowd.get(w.ip, 1) if w.ip is not None else 1,
            )
            scores[w.device_id] = scoring.score(data, at, params)
        if scores:
            await self._stores.devices.set_scores(scores)
            for device_id, score in scores.items():
                value = scoring.admission(score.components, params)
                self._admission[device_id] = _Admission(value, at)
        return scores

    # -- the job ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Score everyone now and every ``score.interval``; devices asked for in between."""
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
        # Forget what no longer says anything (a window old): the cache stays bounded.
        oldest = self._clock() - self.params().window
        self._admission = {d: a for d, a in self._admission.items() if a.computed_at > oldest}
        self._rechecked = {d: t for d, t in self._rechecked.items() if d in self._admission}

    async def _safely(self, device_ids: Collection[str] | None) -> dict[str, NetworkScore]:
        try:
            return await self.score_devices(device_ids, self._clock())
        except Exception as exc:  # storage down: the next round tries again
            log.warning("scoring failed", error=str(exc))
            if device_ids is not None:
                self._retry.update(device_ids)
            return {}
