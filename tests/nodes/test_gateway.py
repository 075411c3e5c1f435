"""The gateway end to end over real loopback sockets, through WebSocketServer.

Every bad-input case runs beside a well-behaved node, which must keep its heartbeats (a PONG for
each PING) and its uptime.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from grass.config import Config
from grass.domain.bearer import hash_token, new_node_key
from grass.domain.devices import DeviceStatus
from grass.metrics import Metrics
from grass.nodes import token as tokens
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.services.admission import origin_allowed
from grass.storage.memory import MemoryStorage
from grass.websocket.client import open_node_socket
from grass.websocket.server import WebSocketServer
from tests.nodes.test_session import FakeTransport
from tests.storage.conftest import make_node_key, make_user

EPOCH = 1_700_002_800.0


class ManualClock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


@attrs.define
class Harness:
    url: str
    port: int
    gateway: Gateway
    storage: MemoryStorage
    server: WebSocketServer
    clock: ManualClock
    user_id: str
    #: The user's node key: what its nodes send as the AUTH answer's user_id.
    node_key: str


def config_with(*, node=None, limits=None, http=None) -> Config:
    base = Config()
    return attrs.evolve(
        base,
        node=attrs.evolve(base.node, **(node or {})),
        limits=attrs.evolve(base.limits, **(limits or {})),
        http=attrs.evolve(base.http, **(http or {})),
    )


@asynccontextmanager
async def harness(
    *, score_of=lambda _: None, ssl_context=None, connect_timeout=10.0, use_poller=True, **options
) -> AsyncIterator[Harness]:
    config = config_with(**options)
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    node_key = new_node_key()
    await storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(node_key)))
    clock = ManualClock()
    metrics = Metrics()
    gateway = Gateway(storage, RunningConfig(config), metrics, clock, score_of=score_of)
    server = WebSocketServer(
        gateway.handle,
        host="127.0.0.1",
        port=0,
        metrics=metrics,
        ssl_context=ssl_context,
        max_message_size=config.node.max_message_size,
        connect_timeout=connect_timeout,
        use_poller=use_poller,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        await nursery.start(gateway.run)
        scheme = "wss" if ssl_context is not None else "ws"
        yield Harness(
            f"{scheme}://127.0.0.1:{port}/",
            port,
            gateway,
            storage,
            server,
            clock,
            user.id,
            node_key,
        )
        server.stop_accepting()
        await server.close_all()
        await gateway.shutdown()
        nursery.cancel_scope.cancel()


def auth_answer(request: dict, user_id: str, device_id: str) -> str:
    result = {
        "browser_id": device_id,
        "user_id": user_id,
        "user_agent": "test",
        "timestamp": 0,
        "device_type": "extension",
        "version": "4.0.0",
    }
    return json.dumps({"id": request["id"], "origin_action": "AUTH", "result": result})


PING = json.dumps({"id": "p-1", "version": "1.0.0", "action": "PING", "data": {}})


async def authenticate(ws, user_id: str, device_id: str | None = None) -> str:
    device_id = device_id or str(uuid.uuid4())
    request = json.loads(await ws.get_message())
    assert request["action"] == "AUTH"
    await ws.send_message(auth_answer(request, user_id, device_id))
    return device_id


async def joined(h: Harness, device_id: str) -> None:
    """The gateway registered the device (so the clock can move: its uptime starts at AUTH)."""
    await wait_for(lambda: h.gateway.registry.get(device_id) is not None)


async def heartbeat(ws) -> None:
    await ws.send_message(PING)
    with trio.fail_after(5):
        assert json.loads(await ws.get_message())["action"] == "PONG"


async def refused(url: str, headers=None, ssl_context=None) -> str:
    """The upgrade is refused with 403 and a JSON error body; returns the error's code.

    Not through ``open_node_socket``: trio-websocket's client leaks its TCP socket when the
    upgrade is rejected, so this helper owns the stream it hands to the library.
    """
    parts = urlsplit(url)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    if ssl_context is not None:
        stream = trio.SSLStream(stream, ssl_context, server_hostname=parts.hostname)
    rejection = None
    async with stream:
        with trio.fail_after(5):
            try:
                async with trio.open_nursery() as nursery:
                    await wrap_client_stream(
                        nursery, stream, parts.hostname, resource, extra_headers=headers
                    )
                    nursery.cancel_scope.cancel()
            except* ConnectionRejected as group:
                (rejection,) = group.exceptions
    assert rejection is not None, "the upgrade was accepted"
    assert rejection.status_code == 403
    assert (b"content-type", b"application/json") in rejection.headers
    error = json.loads(rejection.body)["error"]
    assert set(error) == {"code", "message", "details"}
    return error["code"]


async def close_code(ws) -> int | None:
    with trio.fail_after(5):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def wait_for(predicate) -> None:
    # Real sockets: what the server did is polled (bounded), it publishes no event per step.
    with trio.fail_after(5):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


async def test_a_v4_node_accrues_uptime_between_heartbeats():
    async with harness() as h, open_node_socket(h.url) as ws:
        device_id = await authenticate(ws, h.node_key)
        await joined(h, device_id)
        for _ in range(2):
            h.clock.now += 60
            await heartbeat(ws)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 120
        device = await h.storage.devices.get_device(device_id)
        assert device.status is DeviceStatus.ONLINE
        assert device.ip == "127.0.0.1"
        h.clock.now += 30  # after the last heartbeat: never counted
        await ws.aclose()
        await wait_for(lambda: h.gateway.registry.get(device_id) is None)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 120
        assert (await h.storage.devices.get_device(device_id)).status is DeviceStatus.OFFLINE


async def test_graceful_shutdown_closes_1001_and_flushes():
    async with harness() as h, open_node_socket(h.url) as ws:
        device_id = await authenticate(ws, h.node_key)
        await joined(h, device_id)
        h.clock.now += 45
        await heartbeat(ws)
        h.server.stop_accepting()
        await h.server.close_all()
        await h.gateway.shutdown()
        assert await close_code(ws) == 1001
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 45
        assert (await h.storage.devices.get_device(device_id)).status is DeviceStatus.OFFLINE


async def test_an_unknown_user_is_closed_1008():
    async with harness() as h, open_node_socket(h.url) as ws:
        await authenticate(ws, "x" * 21)
        assert await close_code(ws) == 1008


async def test_a_second_connection_of_a_device_closes_the_first_4000():
    async with harness() as h, open_node_socket(h.url) as first:
        device_id = await authenticate(first, h.node_key)
        async with open_node_socket(h.url) as second:
            await authenticate(second, h.node_key, device_id)
            assert await close_code(first) == 4000
            await heartbeat(second)


async def test_devices_above_the_users_cap_are_closed_1008():
    async with (
        harness(limits={"max_devices_per_user": 1}) as h,
        open_node_socket(h.url) as first,
        open_node_socket(h.url) as second,
    ):
        await authenticate(first, h.node_key)
        await heartbeat(first)
        await authenticate(second, h.node_key)
        assert await close_code(second) == 1008
        await heartbeat(first)


async def test_connections_above_the_per_ip_cap_are_refused_403():
    async with (
        harness(limits={"max_connections_per_ip": 2}) as h,
        open_node_socket(h.url) as a,
        open_node_socket(h.url) as b,
    ):
        await authenticate(a, h.node_key)
        assert await refused(h.url) == "ip_connection_limit"
        await heartbeat(a)
        assert json.loads(await b.get_message())["action"] == "AUTH"  # the second is served
        await b.aclose()
        await wait_for(lambda: h.gateway.registry.connections_from("127.0.0.1") == 1)
        async with open_node_socket(h.url) as c:  # a slot freed: served again
            await authenticate(c, h.node_key)
            await heartbeat(c)


async def test_origin_policy():
    assert origin_allowed(None, ())
    assert origin_allowed("chrome-extension://abc", ())
    assert origin_allowed("chrome-extension://abc", ("abc",))
    assert not origin_allowed("chrome-extension://evil", ("abc",))
    assert not origin_allowed("https://example.com", ())
    async with harness(node={"allowed_extension_ids": ("abc",)}) as h:
        for origin in [b"https://example.com", b"chrome-extension://evil"]:
            assert await refused(h.url, [(b"Origin", origin)]) == "origin_refused"
        async with open_node_socket(
            h.url, extra_headers=[(b"oRiGiN", b"chrome-extension://abc")]
        ) as ws:
            await authenticate(ws, h.node_key)
            await heartbeat(ws)
        assert h.gateway.registry.connections_from("127.0.0.1") <= 1  # refusals hold no slot


async def test_behind_a_trusted_proxy_the_node_is_at_the_forwarded_address():
    # The check-in binds a v5 token to the address the proxy forwarded; the node port must
    # see the node there too (the same rule: grass.domain.addresses).
    forwarded = [(b"X-Forwarded-For", b"198.51.100.4, 203.0.113.9")]
    device_id = str(uuid.uuid4())
    async with harness(node={"allow_legacy_auth": False}) as h:  # no proxy trusted
        token = h.gateway.issue_token(h.user_id, device_id, "203.0.113.9")
        assert await refused(f"{h.url}?token={token}", forwarded) == "token_ip_mismatch"
    async with harness(
        node={"allow_legacy_auth": False}, http={"trusted_proxies": ("127.0.0.0/8",)}
    ) as h:
        token = h.gateway.issue_token(h.user_id, device_id, "203.0.113.9")
        async with open_node_socket(f"{h.url}?token={token}", extra_headers=forwarded) as ws:
            await authenticate(ws, h.node_key, device_id)
            await heartbeat(ws)
            assert h.gateway.registry.connections_from("203.0.113.9") == 1
            assert h.gateway.registry.connections_from("127.0.0.1") == 0


async def test_v5_token_on_the_url():
    async with harness(node={"allow_legacy_auth": False}) as h:
        device_id = str(uuid.uuid4())
        token = h.gateway.issue_token(h.user_id, device_id, "127.0.0.1")
        async with open_node_socket(f"{h.url}?token={token}") as ws:
            await authenticate(ws, h.node_key, device_id)
            await heartbeat(ws)
        async with open_node_socket(f"{h.url}?token={token}") as ws:  # another device
            await authenticate(ws, h.node_key)
            assert await close_code(ws) == 1008
        other_ip = h.gateway.issue_token(h.user_id, device_id, "10.1.2.3")
        assert await refused(f"{h.url}?token={other_ip}") == "token_ip_mismatch"
        forged = tokens.issue(b"k" * 32, h.user_id, device_id, "127.0.0.1", h.clock(), 300)
        assert await refused(f"{h.url}?token={forged}") == "bad_token_signature"
        assert await refused(f"{h.url}?token=v1.x.y") == "malformed_token"
        h.clock.now += h.gateway.running.current.node.checkin_token_ttl
        assert await refused(f"{h.url}?token={token}") == "token_expired"


async def test_a_v5_device_below_the_minimum_score_is_refused_403_at_the_upgrade():
    low, fine = str(uuid.uuid4()), str(uuid.uuid4())
    scores = {low: 0.2, fine: 0.9}
    async with harness(score_of=scores.get, limits={"min_network_score": 0.5}) as h:
        token = h.gateway.issue_token(h.user_id, low, "127.0.0.1")
        assert await refused(f"{h.url}?token={token}") == "score_too_low"
        token = h.gateway.issue_token(h.user_id, fine, "127.0.0.1")
        async with open_node_socket(f"{h.url}?token={token}") as ws:
            await authenticate(ws, h.node_key, fine)
            await heartbeat(ws)
        # A v4 node names its device only at AUTH: the same minimum, as a close after it.
        async with open_node_socket(h.url) as ws:
            await authenticate(ws, h.node_key, low)
            assert await close_code(ws) == 1008
        refusals = h.gateway.metrics.node_closes.labels("403")
        assert refusals._value.get() == 1


async def test_a_ping_flood_earns_no_more_than_wall_clock_time():
    """PINGs are not rate-limited by count: each costs the flooder one parse and one PONG on
    its own connection, and uptime counts wall-clock gaps (a PING at the same instant adds
    nothing). What bounds a flood is the send queue: a node with more than
    ``node.send_queue_size`` PONGs not yet written is closed 4003, like one that never reads."""
    window, windows = 8, 64  # 512 PINGs, never more than 8 PONGs outstanding (queue: 16)
    async with (
        harness(node={"send_queue_size": 16}) as h,
        open_node_socket(h.url) as good,
        open_node_socket(h.url) as flooder,
    ):
        good_id = await authenticate(good, h.node_key)
        flooder_id = await authenticate(flooder, h.node_key)
        await joined(h, good_id)
        await joined(h, flooder_id)
        h.clock.now += 30
        with trio.fail_after(20):
            for _ in range(windows):
                for _ in range(window):
                    await flooder.send_message(PING)
                for _ in range(window):
                    assert json.loads(await flooder.get_message())["action"] == "PONG"
        await heartbeat(good)
        h.clock.now += 30
        await heartbeat(good)
        await heartbeat(flooder)
        await h.gateway.flusher.flush_now()
        for device_id in (good_id, flooder_id):
            assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 60
            assert h.gateway.registry.get(device_id).close_code is None

        # A blast without waiting for the PONGs: served, or closed 4003 when the reader outruns
        # the writer by a queue (scheduling decides which); the good node never notices.
        async with open_node_socket(h.url) as blaster:
            await authenticate(blaster, h.node_key)
            closed = None
            with trio.fail_after(20):
                try:
                    for _ in range(window * windows):
                        await blaster.send_message(PING)
                    for _ in range(window * windows):
                        assert json.loads(await blaster.get_message())["action"] == "PONG"
                except ConnectionClosed as exc:
                    closed = exc.reason.code
            assert closed in (None, 4003)
            h.clock.now += 30
            await heartbeat(good)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=good_id)).seconds == 90


# -- bad input, each beside a good node --------------------------------------------------------


class RawNode:
    """A node on wsproto directly: sends what trio-websocket would refuse to (bad UTF-8) and can
    stop reading altogether."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawNode]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            node = cls(stream)
            await stream.send_all(node.ws.send(Request(host="127.0.0.1", target="/")))
            await node.next_event(AcceptConnection)
            yield node

    async def next_event(self, kind):
        with trio.fail_after(5):
            while True:
                for event in self.ws.events():
                    if isinstance(event, kind):
                        return event
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def send_raw_text_frame(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header = bytes([0x81, 0x80 | len(payload)])
        await self.stream.send_all(header + mask + masked)


async def bad_invalid_utf8(h: Harness) -> None:
    async with RawNode.connect(h.port) as raw:
        await raw.send_raw_text_frame(b'{"a":"\xff\xfe"}')
        event = await raw.next_event(CloseConnection)
        # A real close frame (not an abnormal closure, 1006), then the server's end of stream
        # once the node answers the close.
        assert event.code == 1007
        assert event.reason == "text frame is not valid UTF-8"
        await raw.stream.send_all(raw.ws.send(event.response()))
        assert await read_to_eof(raw.stream) == b""
    closes = h.gateway.metrics.node_closes.labels("1007")
    await wait_for(lambda: closes._value.get() == 1)


async def bad_binary_frame(h: Harness) -> None:
    async with open_node_socket(h.url) as ws:
        await authenticate(ws, h.node_key)
        await ws.send_message(b"\x00\x01")
        assert await close_code(ws) == 1003


async def bad_oversized(h: Harness) -> None:
    async with open_node_socket(h.url) as ws:
        await ws.send_message("x" * (65 * 1024))
        assert await close_code(ws) == 1009


async def bad_before_auth(h: Harness) -> None:
    async with open_node_socket(h.url) as ws:
        await ws.get_message()
        await ws.send_message(PING)
        assert await close_code(ws) == 1008


async def bad_json_and_unknown_action(h: Harness) -> None:
    async with open_node_socket(h.url) as ws:
        await authenticate(ws, h.node_key)
        for text, code in [
            ("{not json", "malformed_json"),
            ('{"id":"1","action":"DANCE","data":{}}', "unknown_action"),
            ('{"id":"1","action":"PING","data":{},"version":5}', "invalid_message"),
            (auth_answer({"id": "again"}, h.node_key, str(uuid.uuid4())), "already_authenticated"),
        ]:
            await ws.send_message(text)
            with trio.fail_after(5):
                reply = json.loads(await ws.get_message())
            assert reply["action"] == "ERROR"
            assert reply["data"]["code"] == code
        await heartbeat(ws)  # still open


async def bad_malformed_browser_id(h: Harness) -> None:
    async with open_node_socket(h.url) as ws:
        await authenticate(ws, h.node_key, "not-a-uuid")
        assert await close_code(ws) == 1008


async def bad_never_reads(h: Harness) -> None:
    async with RawNode.connect(h.port) as raw:
        request = json.loads((await raw.next_event(TextMessage)).data)
        device_id = str(uuid.uuid4())
        await raw.send_text(auth_answer(request, h.node_key, device_id))
        await wait_for(lambda: h.gateway.registry.get(device_id) is not None)
        session = h.gateway.registry.get(device_id)
        big = "x" * 60_000
        with trio.fail_after(20):
            while session.close_code is None:
                h.gateway.registry.send(device_id, big)
                await trio.sleep(0.001)
        assert session.close_code == 4003
        await wait_for(lambda: h.gateway.registry.get(device_id) is None)


@pytest.mark.parametrize(
    "bad",
    [
        bad_invalid_utf8,
        bad_binary_frame,
        bad_oversized,
        bad_before_auth,
        bad_json_and_unknown_action,
        bad_malformed_browser_id,
        bad_never_reads,
    ],
)
async def test_bad_input_leaves_other_nodes_alone(bad):
    async with harness(node={"send_queue_size": 4}) as h, open_node_socket(h.url) as good:
        device_id = await authenticate(good, h.node_key)
        await joined(h, device_id)
        await heartbeat(good)
        await bad(h)
        h.clock.now += 60
        await heartbeat(good)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 60
        assert h.gateway.registry.get(device_id).close_code is None


async def test_gateway_session_on_virtual_time(autojump_clock):
    """The whole path without sockets: AUTH, heartbeats, heartbeat timeout, one flush later the
    uptime is stored, exactly up to the last heartbeat."""
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    key = new_node_key()
    await storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(key)))
    config = config_with(node={"heartbeat_timeout": 100.0, "uptime_flush_interval": 5.0})
    gateway = Gateway(
        storage, RunningConfig(config), Metrics(), lambda: EPOCH + trio.current_time()
    )
    transport = FakeTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        nursery.start_soon(gateway.run_session, transport, "203.0.113.5", None)
        device_id = await transport.auth(user_id=key)
        for _ in range(5):
            await trio.sleep(60)
            transport.ping_()
        await trio.sleep(100.001)
        assert transport.closed == (4002, "heartbeat timeout")
        await trio.sleep(5)
        assert (await storage.uptime.uptime_stats(device_id=device_id)).seconds == 300
        device = await storage.devices.get_device(device_id)
        assert device.status is DeviceStatus.OFFLINE
        assert device.last_seen.timestamp() == pytest.approx(EPOCH + 300, abs=0.01)
        nursery.cancel_scope.cancel()
