"""``grass node`` as a real process against a running server, on memory and on PostgreSQL:
devices authenticate, heartbeat, and their uptime is flushed to storage."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import attrs
import httpx
import pytest
import trio

from grass.app import Server, run
from grass.config import (
    Config,
    LedgerBackend,
    LedgerConfig,
    Seconds,
    Secret,
    StorageBackend,
    StorageConfig,
)
from grass.domain.bearer import hash_token, new_node_key
from grass.postgres.connection import Connection
from grass.storage.abc import Storage
from grass.storage.postgres.storage import PostgresStorage, open_postgres_storage
from tests.foundation.test_cli import _env
from tests.foundation.test_lifecycle import local_config
from tests.storage.conftest import make_node_key, make_user
from tests.storage.postgres.conftest import temporary_schema


@pytest.fixture(params=["memory", "postgres"])
def config(request: pytest.FixtureRequest) -> Iterator[Config]:
    base = local_config()
    base = attrs.evolve(base, node=attrs.evolve(base.node, uptime_flush_interval=Seconds(0.2)))
    if request.param == "memory":
        yield base
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, "e2e") as schema:
        storage = StorageConfig(
            backend=StorageBackend.POSTGRES,
            postgres_dsn=Secret(f"{dsn}?options={quote(f'-csearch_path={schema}')}"),
        )
        # The ledger on PostgreSQL too: its journal lives in the same database.
        ledger = LedgerConfig(backend=LedgerBackend.POSTGRES)
        yield attrs.evolve(base, storage=storage, ledger=ledger)


@asynccontextmanager
async def storage_of(server: Server, config: Config) -> AsyncIterator[Storage]:
    """The server's storage, as this test task can use it: the PostgreSQL pool lives in the
    server's own trio-asyncio loop, which only the server's tasks see, so open another."""
    if config.storage.backend is StorageBackend.MEMORY:
        yield server.backends.storage
        return
    async with open_postgres_storage(config.storage.postgres_dsn.reveal()) as storage:
        yield storage


async def test_grass_node_devices_accrue_uptime(nursery: trio.Nursery, config: Config) -> None:
    server: Server = await nursery.start(run, config)
    async with storage_of(server, config) as storage:
        await _devices_accrue_uptime(server, storage)
        if isinstance(storage, PostgresStorage):
            await _deltas_get_merged(storage)
    server.shutdown()


async def _deltas_get_merged(storage: PostgresStorage) -> None:
    # Flushes append deltas; the server merges them into buckets once per flush interval.
    async def merged(conn: Connection) -> bool:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM uptime_buckets)"))

    with trio.fail_after(30):
        while not await storage.db.run(merged):  # noqa: ASYNC110 (the server's task merges)
            await trio.sleep(0.1)


async def _devices_accrue_uptime(server: Server, storage: Storage) -> None:
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"http://127.0.0.1:{server.http_port}/readyz")
    assert ready.json() == {"status": "ready", "problems": {}}
    user = make_user()
    await storage.users.create_user(user)
    key = new_node_key()  # the node authenticates with it, in place of the user id
    await storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(key)))
    command = [
        sys.executable,
        "-m",
        "grass",
        "node",
        "--url",
        f"ws://127.0.0.1:{server.node_port}/",
    ]
    command += ["--devices", "3", "--ping-interval", "0.3", "--jitter", "0"]
    # The key comes from the environment, not the command line (visible in ps).
    proc = await trio.lowlevel.open_process(
        command, env=_env(GRASS_NODE_KEY=key), stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(30):
            # Another process drives these changes: nothing here could signal an Event.
            while len(server.gateway.registry.devices_of(user.id)) < 3:  # noqa: ASYNC110
                await trio.sleep(0.05)
            # Heartbeats, then one flush interval: devices and uptime are in storage.
            while True:
                page = await storage.devices.list_devices(user.id)
                stats = await storage.uptime.uptime_stats(user_id=user.id)
                if len(page.items) == 3 and stats.seconds > 0:
                    break
                await trio.sleep(0.1)
        assert {d.user_id for d in page.items} == {user.id}
        # Each gap between two PINGs is about 0.3 s: no device earns more than the time it was up.
        assert stats.seconds <= 3 * 30
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
