"""End to end with real processes: ``grass serve`` on PostgreSQL and ``grass node``.

Uptime lands in PostgreSQL with the expected seconds (within one flush interval), and a
graceful shutdown closes every node with 1001 and flushes what they accrued.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import trio

from grass.domain.bearer import hash_token, new_node_key
from grass.storage.postgres.storage import open_postgres_storage
from tests.foundation.test_cli import _env, grass_serve
from tests.storage.conftest import make_node_key, make_user
from tests.storage.postgres.conftest import temporary_schema

PING_INTERVAL = 0.5
FLUSH = 0.5
DEVICES = 3


@pytest.fixture
def schema_dsn(postgres_dsn: str) -> Iterator[str]:
    with temporary_schema(postgres_dsn, "e2e") as schema:
        yield f"{postgres_dsn}?options={quote(f'-csearch_path={schema}')}"


async def test_serve_and_nodes_on_postgres(schema_dsn: str) -> None:
    dsn = schema_dsn
    env = {
        "GRASS_STORAGE": "postgres",
        "GRASS_POSTGRES_DSN": dsn,
        "GRASS_NODE_UPTIME_FLUSH_INTERVAL": str(FLUSH),
    }
    async with grass_serve(**env) as grass, open_postgres_storage(dsn) as storage:
        user = make_user()
        await storage.users.create_user(user)
        key = new_node_key()  # the node authenticates with it, in place of the user id
        await storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(key)))
        command = [*[sys.executable, "-m", "grass"], "node"]
        command += ["--url", f"ws://127.0.0.1:{grass.node_port}/", "--user-id", key]
        command += ["--devices", str(DEVICES), "--ping-interval", str(PING_INTERVAL)]
        command += ["--jitter", "0"]
        spawned = trio.current_time()
        node = await trio.lowlevel.open_process(
            command, env=_env(GRASS_LOGGING_FORMAT="json"), stderr=subprocess.PIPE
        )
        try:
            devices = storage.devices
            with trio.move_on_after(20):  # the node process starts; its devices authenticate
                while len((await devices.list_devices(user.id)).items) < DEVICES:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            listed = (await devices.list_devices(user.id)).items
            assert len(listed) == DEVICES, grass.stderr.decode()[-3000:]
            seen = trio.current_time()  # every device was online by now (and after spawned)
            await trio.sleep(3)
            # Uptime counts between heartbeats: each device has about the time since it was
            # seen, less up to one ping gap at each end and one flush interval not yet written.
            stats = await storage.uptime.uptime_stats(user_id=user.id)
            now = trio.current_time()
            assert DEVICES * (now - seen - 2 * PING_INTERVAL - FLUSH) <= stats.seconds
            assert stats.seconds <= DEVICES * (now - spawned)
            grass.proc.send_signal(signal.SIGTERM)
            now = trio.current_time()
            assert await grass.exit_code() == 0
            # The shutdown's final flush wrote uptime up to each device's last heartbeat.
            after = await storage.uptime.uptime_stats(user_id=user.id)
            assert DEVICES * (now - seen - 2 * PING_INTERVAL) <= after.seconds
            assert after.seconds <= DEVICES * (now - spawned)
            node.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                assert await node.wait() == 0
            assert node.stderr is not None
            output = b""
            async for chunk in node.stderr:
                output += chunk
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    events = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    stopped = next(e for e in events if e["event"] == "nodes stopped")
    assert stopped["last_close_codes"] == ["1001"] * DEVICES
