"""``grass node`` as a real process against a running server: devices authenticate, heartbeat,
and their uptime is flushed to storage; a graceful shutdown closes them with 1001."""

from __future__ import annotations

import signal
import subprocess
import sys

import attrs
import trio

from grass.app import Server, run
from grass.config import Seconds
from tests.foundation.test_cli import _env
from tests.foundation.test_lifecycle import local_config
from tests.storage.conftest import make_user


async def test_grass_node_devices_accrue_uptime(nursery: trio.Nursery) -> None:
    config = local_config()
    config = attrs.evolve(
        config, node=attrs.evolve(config.node, uptime_flush_interval=Seconds(0.2))
    )
    server: Server = await nursery.start(run, config)
    user = make_user()
    await server.backends.storage.users.create_user(user)
    command = [
        sys.executable,
        "-m",
        "grass",
        "node",
        "--url",
        f"ws://127.0.0.1:{server.node_port}/",
    ]
    command += ["--user-id", user.id, "--devices", "3", "--ping-interval", "0.3", "--jitter", "0"]
    proc = await trio.lowlevel.open_process(command, env=_env(), stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(20):
            # Another process drives these changes: nothing here could signal an Event.
            while len(server.gateway.registry.devices_of(user.id)) < 3:  # noqa: ASYNC110
                await trio.sleep(0.05)
            # Two heartbeats each, then one flush interval: uptime is in storage.
            while True:
                page = await server.backends.storage.devices.list_devices(user.id)
                stats = await server.backends.storage.uptime.uptime_stats(user_id=user.id)
                if len(page.items) == 3 and stats.seconds > 0:
                    break
                await trio.sleep(0.1)
        assert {d.user_id for d in page.items} == {user.id}
        server.shutdown()
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
