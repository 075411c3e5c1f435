"""Campaign 2: the node protocol under hostile messages, before and after AUTH.

Volume runs on the sans-I/O core (``NodeConnection``): every message gets an event or a
protocol error with one of the protocol's close codes, quickly, and the error message the server
would send is JSON. Then the whole server (``grass.app.run`` on loopback) gets hostile bursts on
real connections: each message is answered exactly as the core says (PONG, ERROR with its code,
or a close frame with its code), the connection that survives still answers a PING, and the
canary (tests/hostile/campaign.py) keeps its latency throughout.

Nesting stays within ``strategies.SAFE_DEPTH`` here; a message nested to the 64 KiB cap kills the
process today (#13 finding 1) and is played against a subprocess in test_depth.py.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from wsproto.events import CloseConnection, TextMessage

from grass.config import Secret, StorageBackend
from grass.errors import ProtocolError
from grass.nodes.protocol import Authenticated, HttpResponse, NodeConnection, Ping, PongEcho, State
from grass.storage.devices import DeviceStore
from tests.hostile import wire
from tests.hostile.campaign import (
    World,
    campaign_config,
    count,
    hostile_settings,
    open_world,
)
from tests.http.helpers import bearer
from tests.nodes.test_gateway import RawNode, auth_answer, wait_for
from tests.storage.postgres.conftest import temporary_schema

pytestmark = pytest.mark.slow

CLOSE_CODES = {1002, 1003, 1007, 1008, 1009}
#: CPU for one message through the protocol core, at most (a 64 KiB message included; the
#: garbage collector is held off meanwhile: its pauses are the test's heap, not the message's).
MESSAGE_BUDGET = 0.25


def _receive(conn: NodeConnection, text: str) -> None:
    before = conn.state
    error: ProtocolError | None = None
    event: object = None
    gc.disable()
    started = time.thread_time()
    try:
        event = conn.receive_text(text)
    except ProtocolError as exc:
        error = exc
    finally:
        spent = time.thread_time() - started
        gc.enable()
    assert spent < MESSAGE_BUDGET, f"{spent:.3f} s for {text[:200]!r}"
    if error is None:
        assert type(event) in (Authenticated, Ping, PongEcho, HttpResponse)
    elif before is State.CLOSING:
        assert error.ws_close_code == conn.close_code
    elif error.ws_close_code is None:
        assert before is State.AUTHENTICATED, "a stranger gets no dialogue"
        reply = json.loads(conn.error_message(error))
        assert reply["action"] == "ERROR"
        assert reply["data"]["code"] == error.code
    else:
        assert error.ws_close_code in CLOSE_CODES, error
        assert conn.state is State.CLOSING
        assert conn.close_code == error.ws_close_code


def _receive_raw(conn: NodeConnection, data: bytes) -> None:
    """A text frame's payload as it came, UTF-8 or not."""
    try:
        conn.receive_bytes_as_text(data)
    except ProtocolError as exc:
        code = exc.ws_close_code
    else:
        code = None
    assert code in {None, *CLOSE_CODES}


@hostile_settings(3700)
@given(signed_in=st.booleans(), burst=wire.NODE_BURSTS, raw=st.lists(st.binary(max_size=80)))
def test_the_protocol_core_answers_every_hostile_message(signed_in, burst, raw):
    conn = wire.authenticated() if signed_in else NodeConnection(max_message_size=wire.MAX_MESSAGE)
    for text in burst:
        _receive(conn, text)
    for data in raw:
        _receive_raw(conn, data)
    count("node/core")


# -- the whole server over loopback --------------------------------------------------------------


async def play_signed_in(world: World, burst: list[str]) -> None:
    """A signed-in node sends ``burst`` at once; each message is answered as the core says."""
    async with RawNode.connect(world.server.node_port) as node:
        await wire.signed_in(node, world.node_key)
        owed = wire.outcomes(wire.authenticated(), burst)
        await node.stream.send_all(b"".join(node.ws.send(TextMessage(data=t)) for t in burst))
        await _expect(node, owed)


async def play_stranger(world: World, burst: list[str]) -> None:
    """A node that has not answered AUTH sends ``burst``: it is closed, never answered."""
    async with RawNode.connect(world.server.node_port) as node:
        assert isinstance(await wire.next_reply(node), TextMessage)  # the AUTH request
        owed = wire.outcomes(NodeConnection(max_message_size=wire.MAX_MESSAGE), burst)
        await node.stream.send_all(b"".join(node.ws.send(TextMessage(data=t)) for t in burst))
        assert len(owed) == 1  # before AUTH, the first message decides
        assert owed[0][0] == "close"
        await _expect(node, owed)


async def _expect(node: RawNode, owed: list[tuple[str, object]]) -> None:
    for kind, value in owed:
        reply = await wire.next_reply(node)
        if kind == "close":
            assert isinstance(reply, CloseConnection), (reply, owed)
            assert reply.code == value, (reply, owed)
            return
        assert isinstance(reply, TextMessage), (reply, owed)
        data = json.loads(reply.data)
        assert data["action"] == kind, (data, kind, value)
        if kind == "ERROR":
            assert data["data"]["code"] == value, (data, value)
    await node.send_text(wire.PING_MESSAGE)  # and the node still has its connection
    await wire.expect_pong(node)


async def test_the_server_answers_hostile_nodes_as_the_core_says():
    async with open_world("node") as world:

        @hostile_settings(400)
        @given(signed_in=st.integers(0, 3), burst=wire.NODE_BURSTS)
        def examples(signed_in: int, burst: list[str]) -> None:
            world.play(play_signed_in if signed_in else play_stranger, world, burst)
            count(world.campaign)

        await world.drive(examples)
        # Every hostile connection is gone (the server may still be closing the last one).
        await wait_for(lambda: world.server.node.connection_count == 1)


async def test_lone_surrogates_in_auth_never_break_the_owners_dashboard():
    async with open_world("node") as world:
        async with RawNode.connect(world.server.node_port) as node:
            request = json.loads((await wire.next_reply(node)).data)
            answer = json.loads(auth_answer(request, world.node_key, wire.new_device_id()))
            answer["result"]["user_agent"] = "Mozilla/5.0 \udfff"
            answer["result"]["version"] = "\ud800"
            await node.send_text(json.dumps(answer))  # ASCII: the escapes go as they are
            await node.send_text(wire.PING_MESSAGE)
            reply = await wire.next_reply(node)
            count(world.campaign)
            if isinstance(reply, CloseConnection):  # refused at AUTH: nothing was stored
                assert reply.code in CLOSE_CODES
                return
            assert json.loads(reply.data)["action"] == "PONG"  # taken
            await world.server.gateway.flusher.flush_now()  # the device row, as written
        async with httpx.AsyncClient(base_url=world.http_url) as client:
            listed = await client.get("/api/v1/devices", headers=bearer(world.user.session_token))
        assert listed.status_code == 200, listed.text


@pytest.fixture
def schema_dsn(postgres_dsn: str) -> Iterator[str]:
    with temporary_schema(postgres_dsn, "hostile") as schema:
        yield f"{postgres_dsn}?options={quote(f'-csearch_path={schema}')}"


@pytest.mark.postgres
async def test_lone_surrogates_in_auth_never_block_other_nodes_uptime(schema_dsn: str):
    storage = {"backend": StorageBackend.POSTGRES, "postgres_dsn": Secret(schema_dsn)}
    config = campaign_config(storage=storage, node={"uptime_flush_interval": 0.1})
    async with open_world("node", config) as world:
        flusher, devices = world.server.gateway.flusher, world.storage.devices
        canary = world.canary.actor.id
        await wait_for_row(devices, canary)
        async with RawNode.connect(world.server.node_port) as node:
            request = json.loads((await wire.next_reply(node)).data)
            answer = json.loads(auth_answer(request, world.node_key, wire.new_device_id()))
            answer["result"]["user_agent"] = "Mozilla/5.0 \udfff"
            await node.send_text(json.dumps(answer))
            await node.send_text(wire.PING_MESSAGE)
            reply = await wire.next_reply(node)
            count(world.campaign)
            if isinstance(reply, CloseConnection):  # refused at AUTH: nothing to write
                assert reply.code in CLOSE_CODES
            else:  # taken: its row must not hold up the others'
                assert json.loads(reply.data)["action"] == "PONG"
            seen = (await devices.list_devices(canary)).items[0].last_seen
            await trio.sleep(1)  # ten flush intervals
        assert flusher.failures == 0
        # The well-behaved node's row is still written, flush after flush.
        assert (await devices.list_devices(canary)).items[0].last_seen > seen


async def wait_for_row(devices: DeviceStore, user_id: str) -> None:
    # The flusher publishes no event per write: the table is polled (bounded).
    with trio.fail_after(5):
        while not (await devices.list_devices(user_id)).items:  # noqa: ASYNC110
            await trio.sleep(0.05)
