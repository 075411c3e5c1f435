"""The baseline of ``nodes.py``: a minimal node server on the ``websockets`` library (asyncio).

It speaks the same JSON protocol as grass's node gateway, as simply as it can be done: sends the
AUTH request, accepts the answer (same id, ``origin_action`` AUTH), then answers each PING with
a PONG carrying a fresh uuid4 id and ignores everything else (the clients' PONG echoes).
No permessage-deflate, 64 KiB message limit, the library's default keepalive pings.

    .venv/bin/python scripts/bench/_ws_baseline.py

Listens on 127.0.0.1, an ephemeral port; prints ``READY <port> -`` once listening, serves until
SIGTERM/SIGINT, then prints ``GC <worst pause before SIGUSR1> <worst pause after> <collections>``
(seconds, counted from READY) and exits at once (closing thousands of sockets politely is not
what is measured).
``GcTimer`` is shared with the grass server entry of ``nodes.py`` so both servers time their
collector the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import sys
import time
import uuid
from typing import Any


class GcTimer:
    """Times every cyclic-GC pass through ``gc.callbacks``; keeps the worst one."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.setup_worst = 0.0
        self.count = 0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._start)
            self.count += 1

    def reset(self) -> None:
        """The server is ready: what its start-up (imports, app) cost is not counted."""
        self.worst = 0.0
        self.count = 0

    def mark(self) -> None:
        """End of set-up (SIGUSR1): from here on, ``worst`` covers the measured phase only."""
        self.setup_worst, self.worst = self.worst, 0.0

    def report(self) -> str:
        return f"GC {self.setup_worst:.6f} {self.worst:.6f} {self.count}"


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def handler(ws: Any) -> None:
    request_id = str(uuid.uuid4())
    await ws.send(json.dumps({"id": request_id, "version": "1.0.0", "action": "AUTH", "data": {}}))
    answer = json.loads(await ws.recv())
    if answer.get("id") != request_id or answer.get("origin_action") != "AUTH":
        await ws.close(1008, "AUTH expected")
        return
    loads, dumps, uuid4 = json.loads, json.dumps, uuid.uuid4
    async for message in ws:
        if loads(message).get("action") == "PING":
            await ws.send(dumps({"id": str(uuid4()), "action": "PONG", "data": {}}))


async def main() -> None:
    from websockets.asyncio.server import serve

    timer = GcTimer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, timer.mark)
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=64 * 1024) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        timer.reset()
        print(f"READY {port} -", flush=True)
        await stop.wait()
        with contextlib.suppress(OSError):  # the orchestrator may be gone
            print(timer.report(), flush=True)
        os._exit(0)


if __name__ == "__main__":
    raise_fd_limit()
    sys.exit(asyncio.run(main()))
