"""Readiness of node sockets: one edge-triggered epoll set, watched by one task.

``trio.lowlevel.wait_readable`` registers the socket again (one ``epoll_ctl``) and builds a chain
of coroutines, a closure and a waiter record for every wait: about eleven objects the cyclic
collector tracks, re-created by every message of every connection, which made young collector
passes walk a dozen objects per recently active connection. Here each node socket is registered
once, edge-triggered, and a connection waits with ``trio.lowlevel.wait_task_rescheduled`` (three
tracked objects); the poller task wakes it up when its socket has news.

The protocol between :class:`Poller` and a :class:`Pollable` (the node socket): the poller calls
``ready()`` for every event (data, end of stream, error), in the poller's task; the socket reads
and handles what it can right there (``AcceptedSocket._pump``). Edge-triggered means one event per
arrival: the socket reads until a short read before it counts on the next event. A socket with
more to handle than one turn allows asks for ``again()``: it is called once the others had their
turn, after a checkpoint.

Linux only (``select.epoll``); elsewhere :func:`open_poller` returns None and node sockets use
``trio.lowlevel.wait_readable``.
"""

from __future__ import annotations

import contextlib
import select
from typing import Protocol

import trio


class Pollable(Protocol):
    def fileno(self) -> int: ...

    def ready(self) -> None: ...


#: Sockets handled per turn: the rest of the ready ones stay ready in the epoll set (whose own
#: descriptor stays readable) and get the next turn, after the other tasks had theirs.
TURN = 256

_EVENTS = (
    getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLET", 0)
)


class Poller:
    __slots__ = ("_again", "_epoll", "_sockets")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sockets: dict[int, Pollable] = {}
        self._again: list[Pollable] = []

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, pollable: Pollable) -> None:
        fd = pollable.fileno()
        self._sockets[fd] = pollable
        self._epoll.register(fd, _EVENTS)

    def discard(self, pollable: Pollable) -> None:
        """Stop watching (before the socket closes: its descriptor may be reused at once)."""
        fd = pollable.fileno()
        if self._sockets.get(fd) is pollable:
            del self._sockets[fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def again(self, pollable: Pollable) -> None:
        self._again.append(pollable)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        epoll, sockets = self._epoll, self._sockets
        found: Pollable | None
        pollable: Pollable | None
        task_status.started()
        try:
            while True:
                if self._again:
                    await trio.lowlevel.checkpoint()
                    again, self._again = self._again, []
                    for pollable in again:
                        if sockets.get(pollable.fileno()) is pollable:
                            pollable.ready()
                    again.clear()
                else:
                    await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _ in epoll.poll(0, TURN):
                    found = sockets.get(fd)
                    if found is not None:
                        found.ready()
                found = pollable = None  # no closed socket kept until the next wake-up
        finally:
            epoll.close()


def open_poller() -> Poller | None:
    return Poller() if hasattr(select, "epoll") else None
