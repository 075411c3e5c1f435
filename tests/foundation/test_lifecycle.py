"""The server in a nursery: ports, health, readiness, metrics, a node socket, graceful shutdown."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from grass.app import Server, run
from grass.config import Config, Port, Seconds, load_config
from grass.websocket.client import open_node_socket


def local_config(**server: object) -> Config:
    config, _ = load_config(environ={})
    settings: dict[str, object] = {
        "http_host": "127.0.0.1",
        "http_port": Port(0),
        "node_host": "127.0.0.1",
        "node_port": Port(0),
        "grace_period": Seconds(1.0),
    }
    return attrs.evolve(config, server=attrs.evolve(config.server, **(settings | server)))


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Server]:
    running: Server = await nursery.start(run, local_config())
    yield running
    running.shutdown()


async def get(server: Server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        return await client.get(path)


async def test_listens_on_ephemeral_ports(server: Server) -> None:
    assert server.http_port > 0
    assert server.node_port > 0
    assert server.addresses()["nodes"] == f"ws://127.0.0.1:{server.node_port}"


async def test_health_readiness_metrics(server: Server) -> None:
    health = await get(server, "/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}
    assert health.headers["X-Request-Id"]
    ready = await get(server, "/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    metrics = await get(server, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "grass_node_connections_open 0.0" in metrics.text
    assert (
        'grass_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in metrics.text
    )


async def test_unknown_route_gets_the_error_shape(server: Server) -> None:
    reply = await get(server, "/no/such/route")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
    assert set(reply.json()["error"]) == {"code", "message", "details"}


async def test_shutdown_closes_node_sockets_with_1001_within_grace(nursery: trio.Nursery) -> None:
    config = local_config()
    done = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[Server]) -> None:
        await run(config, task_status=task_status)
        done.set()

    server: Server = await nursery.start(serve)
    url = f"ws://127.0.0.1:{server.node_port}/"
    with trio.fail_after(5):
        async with open_node_socket(url) as ws:
            first = json.loads(await ws.get_message())  # the server speaks first: AUTH
            assert first["action"] == "AUTH"
            started = trio.current_time()
            server.shutdown()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001
        await done.wait()
    assert trio.current_time() - started < config.server.grace_period
    # The listener is gone: a new node cannot connect.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.node_port)


async def test_readiness_reports_shutting_down(server: Server) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        assert (await client.get("/readyz")).status_code == 200
        server.node.stop_accepting()
        # /readyz flips to 503 as soon as shutdown begins; hypercorn then stops accepting.
        server.shutdown()
        with trio.fail_after(5):
            while True:
                try:
                    reply = await client.get("/readyz")
                except httpx.TransportError:
                    break
                if reply.status_code == 503:
                    assert reply.json()["status"] == "shutting down"
                    break
                await trio.sleep(0.001)


async def test_port_in_use_is_a_clear_start_up_error(nursery: trio.Nursery) -> None:
    from grass.errors import StartupError

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    with listener, pytest.raises(BaseException) as caught:
        await nursery.start(run, local_config(node_port=Port(port)))
    errors: list[BaseException] = [caught.value]
    flat: list[BaseException] = []
    while errors:
        error = errors.pop()
        if isinstance(error, BaseExceptionGroup):
            errors.extend(error.exceptions)
        else:
            flat.append(error)
    assert any(
        isinstance(e, StartupError) and f"127.0.0.1:{port}" in str(e) and "in use" in str(e)
        for e in flat
    ), flat


async def test_ready_with_redis(nursery: trio.Nursery, redis_url: str) -> None:
    from grass.config import RedisConfig, Secret

    config = attrs.evolve(local_config(), redis=RedisConfig(url=Secret(redis_url)))
    server: Server = await nursery.start(run, config)
    reply = await get(server, "/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready", "problems": {}}
    server.shutdown()


async def test_unreachable_redis_at_start_is_a_clear_error(nursery: trio.Nursery) -> None:
    from grass.config import RedisConfig, Secret
    from grass.errors import StorageUnavailable

    with trio.socket.socket() as probe:  # a port nobody listens on
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = attrs.evolve(
        local_config(), redis=RedisConfig(url=Secret(f"redis://:hunter2@127.0.0.1:{port}/0"))
    )
    with pytest.raises(BaseException) as caught:
        await nursery.start(run, config)
    flat: list[BaseException] = []
    pending: list[BaseException] = [caught.value]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            flat.append(error)
    (error,) = flat
    assert isinstance(error, StorageUnavailable)
    assert f"127.0.0.1:{port}" in str(error)
    assert "hunter2" not in str(error)


async def test_mockchain_ledger_persists_under_its_path(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    from grass.config import LedgerBackend, LedgerConfig

    ledger = LedgerConfig(
        backend=LedgerBackend.MOCKCHAIN,
        mockchain_path=str(tmp_path / "chain"),
        mockchain_block_time=Seconds(0.05),
    )
    config = attrs.evolve(local_config(), ledger=ledger)
    server: Server = await nursery.start(run, config)
    assert (await get(server, "/readyz")).status_code == 200
    await trio.sleep(0.5)  # blocks every 0.05 s: the chain rewrites its file at each one
    server.shutdown()
    assert (tmp_path / "chain" / "chain.jsonl").exists()
