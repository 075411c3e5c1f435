"""The sessions' timers (AUTH deadline, heartbeat watchdog, round-trip pings) in one task.

A heap of entries ``[due, seq, timed]``, checked lazily: a PING only stores its time in the
session (no heap operation), and when a session's entry comes due, :meth:`Timed.tick` says what
is next: the watchdog deadline moved on (the entry goes back at its exact new time), a
round-trip ping is due (sent from here), or the node is silent (the session closes, which wakes
its own task). So a heartbeat costs a float store, an idle session's task never wakes, and every
timeout still fires at exactly its configured value.

Each session has at most one live entry (its ``timer``): an earlier deadline pushes a new one
and empties the older, which is dropped when it comes out. A session that ends calls ``drop``:
its entry is emptied too, so the heap lets go of it at once, not at its next due time (up to a
minute later: a reconnect storm would keep every replaced session alive that long).
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any, Protocol

import trio

#: A heap entry: ``[due, seq, timed]``; ``timed`` is None once superseded or dropped.
Entry = list[Any]


class Timed(Protocol):
    #: Its live entry (set and cleared by the timers only).
    timer: Entry | None

    def tick(self, now: float) -> float | None:
        """Whatever is due at ``now``; returns when to look again (None: never)."""
        ...


class Timers:
    __slots__ = ("_heap", "_scope", "_seq")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, timed: Timed, due: float) -> None:
        """Look at ``timed`` at ``due`` (or earlier, if it asked for an earlier time already)."""
        old = timed.timer
        if old is not None:
            if due >= old[0]:
                return
            old[2] = None
        # The entry and its timed name each other until it comes out or is dropped.
        timed.timer = entry = [due, next(self._seq), timed]
        heapq.heappush(self._heap, entry)
        scope = self._scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due

    def drop(self, timed: Timed) -> None:
        """Never look at ``timed`` again; the heap holds it no more."""
        entry, timed.timer = timed.timer, None
        if entry is not None:
            entry[2] = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        heap = self._heap
        task_status.started()
        try:
            while True:
                with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                    self._scope = scope
                    await trio.sleep_forever()
                self._scope = None
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    _, _, timed = heapq.heappop(heap)
                    if timed is None:
                        continue  # superseded by an earlier entry, or dropped
                    timed.timer = None
                    later = timed.tick(now)
                    if later is not None:
                        self.at(timed, later)
        finally:
            self._scope = None
