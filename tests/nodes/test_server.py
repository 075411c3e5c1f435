"""WebSocketServer on real sockets: upgrade refusals, the opening handshake, handshakes that never
finish, TLS, the fallback without a poller, and no reference cycles per connection."""

from __future__ import annotations

import collections
import contextlib
import json
import ssl

import pytest
import trio
import trustme
from trio_websocket import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Pong, Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

from grass.domain.uptime import Accrual
from grass.errors import StorageUnavailable
from grass.nodes.protocol import NodeConnection
from grass.nodes.session import NodeSession
from grass.websocket.client import insecure_client_context, open_node_socket
from grass.websocket.transport import AcceptedSocket
from tests.nodes.test_gateway import (
    RawNode,
    authenticate,
    close_code,
    harness,
    heartbeat,
    joined,
    refused,
    wait_for,
)

WEB_ORIGIN = b"Origin: https://example.com\r\n"
#: What one node connection is made of, freed when it ends.
LIFECYCLE = (NodeSession, AcceptedSocket, NodeConnection, Accrual)


def upgrade_request(port: int, extra: bytes = b"") -> bytes:
    return (
        b"GET / HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n" % port + extra + b"\r\n"
    )


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_a_refused_upgrade_is_an_http_403_and_the_server_hangs_up():
    """A client that never closes its side still loses the socket: a refusal holds nothing."""
    async with harness() as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        async with stream:
            await stream.send_all(upgrade_request(h.port, WEB_ORIGIN))
            response = await read_to_eof(stream)  # EOF: the server closed, we did not
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 ")
        assert b"content-type: application/json" in head.lower()
        assert body == (
            b'{"error":{"code":"origin_refused","message":"this origin may not connect",'
            b'"details":{}}}'
        )
        assert h.server.connection_count == 0


async def test_handshakes_that_never_finish_are_closed_by_connect_timeout():
    # The issue's 10 000 half-open connections are exercised by `scripts/bench/nodes.py
    # --half-open 10000` (docs/benchmarks.md), not here: 500 keep CI fast and still show that
    # none outlives connect_timeout.
    count, connect_timeout = 500, 0.5
    async with harness(connect_timeout=connect_timeout) as h, open_node_socket(h.url) as good:
        device_id = await authenticate(good, h.node_key)
        await joined(h, device_id)
        streams = []
        try:
            for i in range(count):
                stream = await trio.open_tcp_stream("127.0.0.1", h.port)
                streams.append(stream)
                if i % 2:  # half send a partial request line, half nothing at all
                    await stream.send_all(upgrade_request(h.port)[:30])
            await heartbeat(good)
            started = trio.current_time()
            with trio.fail_after(connect_timeout + 5):
                for stream in streams:
                    assert await read_to_eof(stream) == b""
            assert trio.current_time() - started < connect_timeout + 5
        finally:
            for stream in streams:
                await stream.aclose()
        h.clock.now += 60
        await heartbeat(good)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 60
        assert h.server.connection_count == 1
        assert h.gateway.registry.connections_from("127.0.0.1") == 1


async def test_an_upgrade_check_that_finds_storage_down_is_answered_503(autojump_clock):
    async def storage_down(ip, claims) -> None:
        raise StorageUnavailable("the database does not answer")

    async with harness() as h:
        h.gateway.upgrade_checks.append(storage_down)
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        async with stream:
            await stream.send_all(upgrade_request(h.port))
            response = await read_to_eof(stream)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(body)["error"]["code"] == "unavailable"
        assert h.server.connection_count == 0


async def test_upgrade_checks_are_bounded_by_connect_timeout(autojump_clock):
    """Storage that never answers: the upgrade is refused 503 once connect_timeout (counted
    from the TCP accept) is over, not left waiting."""

    async def storage_hangs(ip, claims) -> None:
        await trio.sleep_forever()

    async with harness(connect_timeout=2.0) as h:
        h.gateway.upgrade_checks.append(storage_hangs)
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        async with stream:
            started = trio.current_time()
            await trio.sleep(1.5)  # most of connect_timeout spent on the request
            await stream.send_all(upgrade_request(h.port))
            response = await read_to_eof(stream)
            assert trio.current_time() - started == pytest.approx(2.0, abs=0.1)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(body)["error"]["code"] == "upgrade_timeout"
        assert h.server.connection_count == 0
        assert h.gateway.registry.connections_from("127.0.0.1") == 0


def tls_server_context() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_on_the_node_port_with_a_self_signed_certificate():
    async with harness(ssl_context=tls_server_context()) as h:
        assert h.url.startswith("wss://")
        async with open_node_socket(h.url, ssl_context=insecure_client_context()) as ws:
            device_id = await authenticate(ws, h.node_key)
            await joined(h, device_id)
            h.clock.now += 60
            await heartbeat(ws)
        await wait_for(lambda: h.gateway.registry.get(device_id) is None)
        await h.gateway.flusher.flush_now()
        assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 60
        # A refusal over TLS is the same 403.
        origin = [(b"Origin", b"https://example.com")]
        assert await refused(h.url, origin, insecure_client_context()) == "origin_refused"
        # A client that checks certificates refuses the self-signed one: the port is TLS.
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        tls = trio.SSLStream(stream, ssl.create_default_context(), server_hostname="127.0.0.1")
        async with tls:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await tls.do_handshake()
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_tls_the_upgrade_request_in_the_same_read_as_the_handshakes_end(autojump_clock):
    """The client's last handshake flight and its request in one write: the request is read
    from what the handshake left buffered (it used to wait for more, then connect_timeout)."""
    async with harness(ssl_context=tls_server_context()) as h:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = insecure_client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        async with stream:
            with trio.fail_after(30):  # beyond connect_timeout (10 s)
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        if outgoing.pending:
                            await stream.send_all(outgoing.read())
                        incoming.write(await stream.receive_some(65536))
                tls.write(upgrade_request(h.port))
                await stream.send_all(outgoing.read())  # Finished and the request together
                response = b""
                while b"\r\n\r\n" not in response:
                    data = await stream.receive_some(65536)
                    assert data, "dropped without an answer"
                    incoming.write(data)
                    with contextlib.suppress(ssl.SSLWantReadError):
                        response += tls.read(65536)
        assert response.startswith(b"HTTP/1.1 101 ")


async def test_open_node_socket_closes_its_stream_when_the_upgrade_is_refused(nursery) -> None:
    """The client helper raises ConnectionRejected itself and leaks no socket (filterwarnings
    = error turns a leaked socket's ResourceWarning into a failure)."""
    import gc

    from trio_websocket import ConnectionRejected

    from grass.metrics import Metrics
    from grass.websocket.client import open_node_socket
    from grass.websocket.server import WebSocketServer

    async def refuse(request) -> None:
        await request.reject(403, {"error": {"code": "forbidden", "message": "no", "details": {}}})

    server = WebSocketServer(refuse, host="127.0.0.1", port=0, metrics=Metrics())
    port = await nursery.start(server.serve)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_node_socket(f"ws://127.0.0.1:{port}/"):
            pass
    assert rejected.value.status_code == 403
    gc.collect()
    server.stop_accepting()


# -- the opening handshake (RFC 6455 §4.2) ----------------------------------------------------


def upgrade(port: int, *lines: bytes, drop: bytes = b"") -> bytes:
    head = [
        b"GET / HTTP/1.1",
        b"Host: 127.0.0.1:%d" % port,
        b"Upgrade: websocket",
        b"Connection: keep-alive, Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
    ]
    if drop:
        head = [line for line in head if not line.lower().startswith(drop.lower())]
    return b"\r\n".join([*head, *lines]) + b"\r\n\r\n"


async def exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        response = await read_to_eof(stream)
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),  # a plain GET
        (b"this is not HTTP\r\n\r\n", b"400"),
        (upgrade(1, drop=b"Upgrade:"), b"400"),
        (upgrade(1, drop=b"Connection:"), b"400"),
        (upgrade(1, drop=b"Sec-WebSocket-Key"), b"400"),
        (upgrade(1, b"Sec-WebSocket-Key: c2hvcnQ=", drop=b"Sec-WebSocket-Key"), b"400"),
        (upgrade(1, drop=b"Sec-WebSocket-Version"), b"400"),
        (upgrade(1, b"Sec-WebSocket-Version: 8", drop=b"Sec-WebSocket-Version"), b"426"),
    ],
)
async def test_an_invalid_opening_handshake_is_answered_and_dropped(request_, status):
    async with harness() as h:
        head, body = await exchange(h.port, request_)
        assert head.split(b" ")[1] == status
        assert b"content-type: application/json" in head.lower()
        if status == b"426":
            assert b"sec-websocket-version: 13" in head.lower()
        assert json.loads(body)["error"]["code"] == "bad_upgrade"
        assert h.server.connection_count == 0
        assert h.gateway.registry.connections_from("127.0.0.1") == 0


async def test_the_handshake_answer_negotiates_no_extension_and_frames_may_follow_at_once():
    """permessage-deflate asked for is not granted (DESIGN §12); a frame sent right behind the
    request (before the 101 arrived) is not lost."""
    async with harness() as h:
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)
        async with stream:
            client = WSConnection(ConnectionType.CLIENT)
            # What wsproto would send for the handshake, asking for compression.
            request = client.send(
                Request(host="127.0.0.1", target="/", extensions=[PerMessageDeflate()])
            )
            ping = FrameProtocol(True, []).ping(b"early")
            await stream.send_all(request + bytes(ping))
            data = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in data:
                    data += await stream.receive_some(65536)
            head = data.partition(b"\r\n\r\n")[0]
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"sec-websocket-extensions" not in head.lower()
            client.receive_data(data)  # wsproto checks Sec-WebSocket-Accept
            events = list(client.events())
            assert isinstance(events[0], AcceptConnection)
            assert events[0].extensions == []
            while not any(isinstance(e, Pong) for e in events):
                client.receive_data(await stream.receive_some(65536))
                events += list(client.events())
            (pong,) = [e for e in events if isinstance(e, Pong)]
            assert pong.payload == b"early"


async def test_a_session_without_the_poller():
    """What a system without epoll runs: the session's task reads its socket itself."""
    async with harness(use_poller=False) as h, open_node_socket(h.url) as ws:
        device_id = await authenticate(ws, h.node_key)
        await joined(h, device_id)
        h.clock.now += 60
        await heartbeat(ws)
        await ws.send_message(b"\x00")
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1003
    await h.gateway.flusher.flush_now()
    assert (await h.storage.uptime.uptime_stats(device_id=device_id)).seconds == 60


@pytest.mark.parametrize("use_poller", [True, False], ids=["poller", "own-reads"])
async def test_connection_lifecycles_leave_no_reference_cycles(use_poller):
    """Per-connection objects are freed by reference counting alone (what lets the collector
    freeze settled connections: grass/nodes/collector.py), whichever way a connection ends."""
    import gc

    async def lifecycles(h) -> None:
        async with open_node_socket(h.url) as first:  # a heartbeat, then replaced (4000)
            device_id = await authenticate(first, h.node_key)
            await heartbeat(first)
            async with open_node_socket(h.url) as second:
                await authenticate(second, h.node_key, device_id)
                await close_code(first)
                await heartbeat(second)
        async with open_node_socket(h.url) as ws:  # before AUTH, a bad message (1008)
            await ws.get_message()
            await ws.send_message("{not json")
            await close_code(ws)
        async with RawNode.connect(h.port) as raw:  # invalid UTF-8 (1007), answered close
            await raw.send_raw_text_frame(b"\xff")
            event = await raw.next_event(CloseConnection)
            await raw.stream.send_all(raw.ws.send(event.response()))
        stream = await trio.open_tcp_stream("127.0.0.1", h.port)  # unmasked frame (1002)
        async with stream:
            await stream.send_all(upgrade_request(h.port))
            await stream.send_all(b"\x81\x02hi")
            await read_to_eof(stream)
        origin = [(b"Origin", b"https://example.com")]  # refused upgrade (403)
        assert await refused(h.url, origin) == "origin_refused"
        await exchange(h.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not an upgrade (400)
        await wait_for(lambda: h.server.connection_count == 0)

    async with harness(use_poller=use_poller) as h:
        await lifecycles(h)  # warm: first-use caches are not garbage
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await lifecycles(h)
            await lifecycles(h)
            await h.gateway.flusher.flush_now()  # it holds the retired accruals until then
            # Freed already, the collector off: nothing holds them (the timers neither), so a
            # cycle among their objects would show below.
            alive = [type(o).__qualname__ for o in gc.get_objects() if isinstance(o, LIFECYCLE)]
            gc.collect()
            garbage = [type(o).__qualname__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert alive == [], collections.Counter(alive)
        assert garbage == [], collections.Counter(garbage)
