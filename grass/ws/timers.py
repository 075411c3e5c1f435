"""The sessions' timers (AUTH deadline, heartbeat watchdog, round-trip pings) in one task.

A heap of ``(due, seq, session)``, checked lazily: a PING only stores its time in the session
(no heap operation), and when a session's entry comes due, :meth:`Timed.tick` says what is next:
the watchdog deadline moved on (the entry goes back at its exact new time), a round-trip ping is
due (sent from here), or the node is silent (the session closes, which wakes its own task). So a
heartbeat costs a float store, an idle session's task never wakes, and every timeout still fires
at exactly its configured value.

Each session has at most one live entry (its ``due``): an earlier deadline pushes a new one and
the older is dropped when it comes out.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio


class Timed(Protocol):
    due: float

    def tick(self, now: float) -> float | None:
        """Whatever is due at ``now``; returns when to look again (None: never)."""
        ...


class Timers:
    __slots__ = ("_heap", "_scope", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, timed: Timed, due: float) -> None:
        """Look at ``timed`` at ``due`` (or earlier, if it asked for an earlier time already)."""
        if due >= timed.due:
            return
        timed.due = due
        heapq.heappush(self._heap, (due, next(self._seq), timed))
        scope = self._scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due

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
                    due, _, timed = heapq.heappop(heap)
                    if timed.due != due:
                        continue  # superseded by an earlier entry
                    timed.due = math.inf
                    later = timed.tick(now)
                    if later is not None:
                        self.at(timed, later)
        finally:
            self._scope = None
