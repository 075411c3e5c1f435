"""The poller hands ready sockets over a bounded number at a time: many busy nodes cannot keep
the timers task and the HTTP API from running."""

from __future__ import annotations

import socket

import pytest
import trio

from grass.websocket.poller import TURN, open_poller
from tests.conftest import IN_CI


class Counted:
    def __init__(self, sock: socket.socket, log: list[str]) -> None:
        self._sock, self._log = sock, log

    def fileno(self) -> int:
        return self._sock.fileno()

    def ready(self) -> None:
        self._sock.recv(64)
        self._log.append("ready")


async def test_a_turn_hands_over_at_most_turn_sockets():
    poller = open_poller()
    if poller is None:
        # CI runs on Linux, where the poller must exist; elsewhere the fallback has no turns.
        if IN_CI:
            pytest.fail("CI requires epoll (Linux): the node poller is missing")
        pytest.skip("requires epoll (Linux); the fallback has no turns to bound")
    log: list[str] = []
    pairs = [socket.socketpair() for _ in range(TURN * 2 + 10)]
    try:
        for ours, _ in pairs:
            ours.setblocking(False)
            poller.add(Counted(ours, log))
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            for _, theirs in pairs:
                theirs.send(b"x")
            # Another task, checkpointing: it must get turns between the poller's.
            while log.count("ready") < len(pairs):
                log.append("other")
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    runs, run = [], 0
    for what in log:
        if what == "ready":
            run += 1
        elif run:
            runs.append(run)
            run = 0
    runs.append(run)
    assert sum(runs) == len(pairs)
    # Trio runs the tasks of one scheduler pass in random order, so two of the poller's turns
    # may meet in the log; one turn taking every socket (before: all 522) cannot hide.
    assert len(runs) >= 2
    assert max(runs) <= 2 * TURN
