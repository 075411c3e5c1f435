"""The in-process :class:`~grass.storage.shared_state.EventLog`: one instance, no Redis.

Ids are ``<the process's start in ms>-<counter>``: an id from before a restart is unknown to
the new process (its replay is incomplete), never mistaken for a newer one. Expiry runs on
Trio's clock, so tests run on virtual time.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence

import attrs
import trio

from grass.storage.shared_state import PubSub, Replay, frame

DEFAULT_MAX_EVENTS = 100
DEFAULT_TTL = 3600.0


@attrs.define
class _Log:
    events: deque[tuple[str, bytes]]
    expires_at: float = 0.0


class InProcessEventLog:
    def __init__(
        self,
        pubsub: PubSub,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        if max_events < 1 or not ttl > 0:
            raise ValueError("an event log keeps at least one event for a positive time")
        self._pubsub = pubsub
        self._max = max_events
        self._ttl = ttl
        self._epoch = int(time.time() * 1000)
        self._counter = itertools.count(1)
        self._logs: dict[str, _Log] = {}
        self._sweep_at = 1024

    def _live(self, channel: str, now: float) -> _Log | None:
        log = self._logs.get(channel)
        if log is not None and log.expires_at <= now:
            del self._logs[channel]
            return None
        return log

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> list[str]:
        now = trio.current_time()
        ids = []
        for channel, message in messages:
            event_id = f"{self._epoch}-{next(self._counter)}"
            log = self._live(channel, now)
            if log is None:
                log = self._logs[channel] = _Log(deque(maxlen=self._max))
            log.events.append((event_id, message))
            log.expires_at = now + self._ttl
            ids.append(event_id)
        if len(self._logs) >= self._sweep_at:
            # Amortised: sweep when the table has doubled since the last sweep.
            self._logs = {c: log for c, log in self._logs.items() if log.expires_at > now}
            self._sweep_at = max(1024, 2 * len(self._logs))
        for (channel, message), event_id in zip(messages, ids, strict=True):
            await self._pubsub.publish(channel, frame(event_id, message))
        return ids

    async def replay(self, channel: str, after: str | None) -> Replay:
        await trio.lowlevel.checkpoint()
        log = self._live(channel, trio.current_time())
        if log is None:
            return Replay(events=(), complete=after is None, last_id=None)
        events = tuple(log.events)
        last = events[-1][0]
        if after is None:
            return Replay(events=(), complete=True, last_id=last)
        for index, (event_id, _) in enumerate(events):
            if event_id == after:
                return Replay(events=events[index + 1 :], complete=True, last_id=last)
        return Replay(events=(), complete=False, last_id=last)
