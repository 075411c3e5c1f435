"""NodeServer on real sockets: upgrade refusals, handshakes that never finish, TLS."""

from __future__ import annotations

import ssl

import pytest
import trio
import trustme

from grass.ws.client import insecure_client_context, open_node_socket
from tests.ws.test_gateway import authenticate, harness, heartbeat, joined, refused, wait_for

WEB_ORIGIN = b"Origin: https://example.com\r\n"


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
    # The issue's 10 000 half-open connections are exercised by scripts/bench/nodes.py, not
    # here: 500 keep CI fast and still show that none outlives connect_timeout.
    count, connect_timeout = 500, 0.5
    async with harness(connect_timeout=connect_timeout) as h, open_node_socket(h.url) as good:
        device_id = await authenticate(good, h.user_id)
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


def tls_server_context() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_on_the_node_port_with_a_self_signed_certificate():
    async with harness(ssl_context=tls_server_context()) as h:
        assert h.url.startswith("wss://")
        async with open_node_socket(h.url, ssl_context=insecure_client_context()) as ws:
            device_id = await authenticate(ws, h.user_id)
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


async def test_open_node_socket_closes_its_stream_when_the_upgrade_is_refused(nursery) -> None:
    """The client helper raises ConnectionRejected itself and leaks no socket (filterwarnings
    = error turns a leaked socket's ResourceWarning into a failure)."""
    import gc

    from trio_websocket import ConnectionRejected

    from grass.metrics import Metrics
    from grass.ws.client import open_node_socket
    from grass.ws.server import NodeServer

    async def refuse(request) -> None:
        await request.reject(403, {"error": {"code": "forbidden", "message": "no", "details": {}}})

    server = NodeServer(refuse, host="127.0.0.1", port=0, metrics=Metrics())
    port = await nursery.start(server.serve)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_node_socket(f"ws://127.0.0.1:{port}/"):
            pass
    assert rejected.value.status_code == 403
    gc.collect()
    server.stop_accepting()
