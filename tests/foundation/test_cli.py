"""``grass`` as a real process: serve, signals, reload, bad config, start-up failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from grass.cli.main import UsageError, node_credential
from grass.config import Config, load_config

GRASS = [sys.executable, "-m", "grass"]


@attrs.define
class Process:
    proc: trio.Process
    http_port: int
    node_port: int
    stderr: bytearray
    changed: trio.Event  # replaced by a new one each time stderr grows
    drained: trio.Event  # stderr reached its end

    async def wait_for_log(self, event: str) -> dict[str, object]:
        with trio.fail_after(10):
            while True:
                found = [e for e in log_events(self.stderr) if str(e["event"]).startswith(event)]
                if found:
                    return found[-1]
                await self.changed.wait()

    async def exit_code(self) -> int:
        with trio.fail_after(10):
            code = await self.proc.wait()
            await self.drained.wait()
        return code


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASS_")}
    env["GRASS_LOGGING_FORMAT"] = "json"
    env.update(extra)
    return env


@asynccontextmanager
async def grass_serve(
    *args: str, preexec_fn: Callable[[], None] | None = None, **env: str
) -> AsyncIterator[Process]:
    """Start ``grass serve`` on ephemeral loopback ports and wait until it prints its addresses
    (``preexec_fn``: run in the child before grass starts, e.g. to lower a resource limit)."""
    command = [*GRASS, *args, "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--node-host", "127.0.0.1", "--node-port", "0"]
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(**env),
            preexec_fn=preexec_fn,
        )
        stderr = bytearray()
        grass = Process(proc, 0, 0, stderr, trio.Event(), trio.Event())

        async def drain() -> None:
            assert proc.stderr is not None
            async for chunk in proc.stderr:
                stderr.extend(chunk)
                grass.changed.set()
                grass.changed = trio.Event()
            grass.drained.set()

        nursery.start_soon(drain)
        out = b""
        assert proc.stdout is not None
        try:
            with trio.fail_after(15):
                while out.count(b"\n") < 2:
                    chunk = await proc.stdout.receive_some()
                    assert chunk, f"grass exited early: {stderr.decode()}"
                    out += chunk
            lines = out.decode().splitlines()
            grass.http_port = int(lines[0].rsplit(":", 1)[1])
            grass.node_port = int(lines[1].rsplit(":", 1)[1])
            yield grass
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            nursery.cancel_scope.cancel()


def log_events(stderr: bytearray) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


async def test_serve_then_sigterm_exits_zero() -> None:
    async with grass_serve() as grass:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://127.0.0.1:{grass.http_port}/healthz")
        assert reply.json() == {"status": "alive"}
        grass.proc.send_signal(signal.SIGTERM)
        assert await grass.exit_code() == 0
        events = [e["event"] for e in log_events(grass.stderr)]
        assert "shutting down" in events
        assert "stopped" in events


async def test_second_signal_stops_at_once() -> None:
    async with grass_serve() as grass:
        # A node that finished the handshake but never reads keeps the graceful close waiting.
        stream = await trio.open_tcp_stream("127.0.0.1", grass.node_port)
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in await stream.receive_some()
        grass.proc.send_signal(signal.SIGINT)
        await grass.wait_for_log("shutting down")
        started = trio.current_time()
        grass.proc.send_signal(signal.SIGINT)
        assert await grass.exit_code() == 130
        assert trio.current_time() - started < 2
        await stream.aclose()
        await grass.wait_for_log("second signal, stopping now")


async def test_sighup_reloads_and_refuses_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "grass.toml"
    path.write_text('[logging]\nlevel = "info"\n')
    async with grass_serve("--config", str(path)) as grass:
        path.write_text('[logging]\nlevel = "debug"\n[limits]\nmax_devices_per_user = 3\n')
        grass.proc.send_signal(signal.SIGHUP)
        await grass.wait_for_log("config reloaded")
        path.write_text('[limits]\nmax_devices_per_user = "lots"\n')
        grass.proc.send_signal(signal.SIGHUP)
        refused = await grass.wait_for_log("config reload refused")
        assert refused["problems"] == [
            f"limits.max_devices_per_user (from {path}): expected an integer, got 'lots'"
        ]
        # Still serving, with the config from the accepted reload.
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://127.0.0.1:{grass.http_port}/healthz")
            assert reply.status_code == 200
            metrics = (await client.get(f"http://127.0.0.1:{grass.http_port}/metrics")).text
        assert 'grass_config_reloads_total{result="applied"} 1.0' in metrics
        assert 'grass_config_reloads_total{result="refused"} 1.0' in metrics
        grass.proc.send_signal(signal.SIGTERM)
        assert await grass.exit_code() == 0


def test_bad_config_exits_2_naming_every_problem() -> None:
    result = subprocess.run(
        [*GRASS, "serve"],
        env=_env(GRASS_SERVER_HTTP_PORT="http", GRASS_STORAGE="mongo"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        "server.http_port (from GRASS_SERVER_HTTP_PORT): expected an integer, got 'http'"
        in result.stderr
    )
    assert (
        "storage.backend (from GRASS_STORAGE): expected one of memory, postgres, got 'mongo'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_port_in_use_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*GRASS, "serve", "--host", "127.0.0.1", "--port", str(port), "--node-port", "0"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("grass:")]
    assert errors == [f"grass: cannot listen for HTTP on 127.0.0.1:{port}: address already in use"]
    assert "Traceback" not in result.stderr


def test_config_show_masks_secrets() -> None:
    result = subprocess.run(
        [*GRASS, "config", "show"],
        env=_env(
            GRASS_STORAGE="postgres",
            GRASS_POSTGRES_DSN="postgresql://grass:topsecret@db/grass",
            GRASS_SECRETS_TOKEN_KEY="alsosecret",
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["storage"]["postgres_dsn"] == "postgresql://grass:********@db/grass"
    assert shown["secrets"]["token_key"] == "********"
    assert "topsecret" not in result.stdout
    assert "alsosecret" not in result.stdout


def test_unreachable_postgres_exits_1_with_one_line() -> None:
    result = subprocess.run(
        [*GRASS, "serve", "--host", "127.0.0.1", "--port", "0", "--node-port", "0"],
        env=_env(
            GRASS_STORAGE="postgres",
            GRASS_POSTGRES_DSN="postgresql://grass:hunter2@127.0.0.1:1/grass",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("grass:")]
    assert errors == [
        "grass: cannot connect to PostgreSQL at 127.0.0.1:1/grass: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    ]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_grass_node_takes_its_key_from_a_file_or_the_environment(tmp_path: Path) -> None:
    """Not only from the command line, where ps and shell history show it. Failed before:
    there was no --node-key-file, and the config loader refused GRASS_NODE_KEY."""
    key_file = tmp_path / "node-key"
    key_file.write_text("gnk_from_the_file\n")
    environ = {"GRASS_NODE_KEY": " gnk_from_the_environment\n"}
    assert node_credential(str(key_file), None, environ) == "gnk_from_the_file"
    assert node_credential(None, None, environ) == "gnk_from_the_environment"
    assert node_credential(None, "gnk_given", environ) == "gnk_given"  # still works
    config, _ = load_config(None, {"GRASS_NODE_KEY": "gnk_x"})  # not an unknown setting
    assert config == Config()


def test_grass_node_without_a_usable_key_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    huge = tmp_path / "huge"
    huge.write_text("k" * 10_000_000)  # read up to the bound only
    refusals = {
        (str(empty), None): f"the node key file {empty} is empty",
        (str(huge), None): "holds more than a key",
        (str(tmp_path / "missing"), None): "cannot read the node key file",
        (str(empty), "gnk_given"): "give --node-key-file or --user-id, not both",
        (None, None): "no node key: give --node-key-file PATH or set GRASS_NODE_KEY",
    }
    for (key_file, user_id), message in refusals.items():
        with pytest.raises(UsageError, match=message):
            node_credential(key_file, user_id, {"GRASS_NODE_KEY": ""})
    result = subprocess.run(
        [*GRASS, "node", "--node-key-file", str(empty)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == f"grass: the node key file {empty} is empty\n"
