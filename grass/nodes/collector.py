"""Short garbage-collector passes with many node connections (architecture §12: none over 50 ms).

CPython's cyclic collector walks every object of the generations it collects. With thousands of
sockets the heap is far larger than the caches and a walk costs 0.2-0.5 µs an object on these
machines; an idle node connection holds ~25 tracked objects (its task and coroutines, socket,
session, protocol state, accrual), so one full pass at 20 000 connections would take over
100 ms whatever the thresholds. What keeps passes short:

- nothing per message survives the message: the poller handles PINGs in its own task
  (``grass.websocket.poller``), the timers task times every session (``grass.nodes.timers``),
  so an idle
  connection's objects never change and the young generation holds only what is new;
- ``Collector.settle()`` at start-up: collect once, freeze what is loaded (modules, app, config:
  never garbage), and keep young passes small (threshold ``YOUNG``);
- ``Collector.connected()`` for every new authenticated session: after ``BATCH`` of them, one
  pass over the young generations (which frees the cycles among recent objects), then
  ``gc.freeze()``: settled connections are never walked again;
- :func:`paused` around batch work that builds tens of thousands of short-lived acyclic objects
  (an uptime flush: one row per device): a pass in the middle would walk them all for nothing.

Frozen objects are still freed by reference counting when their connection ends: nothing a
connection allocates forms a reference cycle (``tests/nodes/test_server.py`` runs whole
lifecycles, well-behaved and not, with the collector off, and finds no cyclic garbage). What a
freeze keeps from the collector for good is cyclic garbage that was still referenced at that
instant, or that had outlived two passes; freezes come once per batch of connections, not per
unit of time, which bounds it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

#: Young-generation threshold: allocations (net of deallocations) between two young passes.
YOUNG: Final = 10_000
THRESHOLDS: Final = (YOUNG, 10, 10)
#: New sessions between two freezes.
BATCH: Final = 1_000


class Collector:
    __slots__ = ("_since", "freezes")

    def __init__(self) -> None:
        self._since = 0
        self.freezes = 0

    def settle(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)

    def connected(self) -> None:
        self._since += 1
        if self._since >= BATCH:
            self._since = 0
            self.freezes += 1
            gc.collect(1)
            gc.freeze()


_pauses = 0


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collector pass inside (nested pauses: the outermost one resumes)."""
    global _pauses
    if not _pauses and not gc.isenabled():
        yield  # someone else turned the collector off: leave it so
        return
    _pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _pauses -= 1
        if not _pauses:
            gc.enable()
