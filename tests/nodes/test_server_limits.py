"""The node server's bounds on real loopback sockets: frames that make no message, half-open
connections (per source address, in all, when accept() runs out of descriptors), each beside a
well-behaved node that must keep being served."""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import structlog
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from grass.domain.bearer import hash_token, new_node_key
from grass.metrics import Metrics
from grass.nodes.gateway import Gateway
from grass.running import RunningConfig
from grass.storage.memory import MemoryStorage
from grass.websocket.server import WebSocketServer
from tests.nodes.test_gateway import (
    Harness,
    ManualClock,
    authenticate,
    config_with,
    heartbeat,
    joined,
    read_to_eof,
    wait_for,
)
from tests.nodes.test_server import upgrade_request
from tests.storage.conftest import make_node_key, make_user


@asynccontextmanager
async def harness(**server_options) -> AsyncIterator[Harness]:
    config = config_with()
    storage = MemoryStorage()
    user = make_user()
    await storage.users.create_user(user)
    node_key = new_node_key()  # what its nodes answer AUTH with
    await storage.node_keys.create_node_key(make_node_key(user, key_hash=hash_token(node_key)))
    clock = ManualClock()
    metrics = Metrics()
    gateway = Gateway(storage, RunningConfig(config), metrics, clock)
    server = WebSocketServer(
        gateway.handle, host="127.0.0.1", port=0, metrics=metrics, **server_options
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        await nursery.start(gateway.run)
        url = f"ws://127.0.0.1:{port}/"
        yield Harness(url, port, gateway, storage, server, clock, user.id, node_key)
        await server.close_all()
        await gateway.shutdown()
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def good_node(h: Harness, source: str) -> AsyncIterator[WebSocketConnection]:
    """An authenticated node from ``source`` (an address of 127.0.0.0/8), heartbeating."""
    stream = await trio.open_tcp_stream("127.0.0.1", h.port, local_address=source)
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(5):
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        await joined(h, await authenticate(ws, h.node_key))
        await heartbeat(ws)
        yield ws
        await ws.aclose()


@asynccontextmanager
async def half_open(
    h: Harness, sources: list[str] | str, count: int = 1
) -> AsyncIterator[list[trio.SocketStream]]:
    """TCP connections that send nothing (``count`` from each source), closed at the end."""
    streams: list[trio.SocketStream] = []
    try:
        for source in [sources] if isinstance(sources, str) else sources:
            for _ in range(count):
                stream = await trio.open_tcp_stream("127.0.0.1", h.port, local_address=source)
                streams.append(stream)
        yield streams
    finally:
        for stream in streams:
            await stream.aclose()


async def dropped(stream: trio.SocketStream, wait: float = 0.2) -> bool:
    """Whether the server hung up on ``stream`` (within ``wait`` seconds)."""
    with trio.move_on_after(wait):
        return await stream.receive_some() == b""
    return False


def dropped_total(h: Harness, reason: str) -> float:
    return h.gateway.metrics.node_dropped.labels(reason)._value.get()


async def test_endless_empty_continuation_frames_leave_the_other_nodes_served():
    """The issue's two sockets: one text fragment, then empty continuations for ever. They are
    closed 1009 after max_fragments frames; meanwhile the good node's PINGs are answered."""
    fragment = b"\x01\x81\0\0\0\0{"  # masked with a zero key: the payload as it is
    empty = b"\x00\x80\0\0\0\0"
    async with (
        harness(max_fragments=64) as h,
        good_node(h, "127.0.0.2") as good,
        half_open(h, "127.0.0.3", 2) as streams,
    ):

        async def flood(stream: trio.SocketStream) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(upgrade_request(h.port) + fragment)
                while True:
                    await stream.send_all(empty * 4096)

        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(flood, stream)
            await heartbeat(good)
            closes = h.gateway.metrics.node_closes.labels("1009")
            await wait_for(lambda: closes._value.get() == 2)
            for stream in streams:
                data = await read_to_eof(stream)  # the 101, AUTH, a close frame 1009, EOF
                close = data[data.rindex(b"\x88") :]
                assert close[2:] == b"\x03\xf1message in more than 64 frames"
            nursery.cancel_scope.cancel()
        await heartbeat(good)


async def test_past_the_cap_per_address_half_open_sockets_are_dropped_at_once():
    async with harness(max_pending_per_address=4) as h, half_open(h, "127.0.0.3", 10) as streams:
        async with good_node(h, "127.0.0.2") as good:  # another address: served
            held = [not await dropped(stream) for stream in streams]
            assert held == [True] * 4 + [False] * 6
            assert dropped_total(h, "address") == 6
            await heartbeat(good)
        # A half-open socket that ends gives its place back.
        await streams[0].aclose()
        await wait_for(lambda: h.server._admission.pending == 3)
        async with half_open(h, "127.0.0.3", 2) as more:
            assert [await dropped(stream) for stream in more] == [False, True]


async def test_behind_a_trusted_proxy_the_peer_is_not_counted_per_address():
    proxies = ("127.0.0.3/32",)
    async with (
        harness(max_pending_per_address=4, trusted_proxies=lambda: proxies) as h,
        half_open(h, "127.0.0.3", 10) as streams,
    ):
        assert not any([await dropped(stream) for stream in streams])
        assert dropped_total(h, "address") == 0
        async with good_node(h, "127.0.0.3") as good:  # and its nodes are served
            await heartbeat(good)


async def test_past_the_cap_on_pending_sockets_the_oldest_are_shed():
    sources = [f"127.0.0.{10 + i}" for i in range(8)]
    async with (
        harness(max_pending=5) as h,
        half_open(h, sources) as streams,
        good_node(h, "127.0.0.2") as good,  # sheds one more: the 4th
    ):
        assert [await dropped(stream) for stream in streams] == [True] * 4 + [False] * 4
        assert dropped_total(h, "pending") == 4
        await heartbeat(good)


async def test_at_the_process_cap_pending_sockets_make_room_for_new_ones():
    async with (
        harness(max_connections=6) as h,
        good_node(h, "127.0.0.2") as good,
        half_open(h, "127.0.0.3", 8) as streams,
    ):
        # One socket upgraded, five pending at most: the three oldest half-open were shed.
        assert [await dropped(stream) for stream in streams] == [True] * 3 + [False] * 5
        async with good_node(h, "127.0.0.4") as other:
            await heartbeat(other)
        await heartbeat(good)
        assert h.server._admission.open <= 6


@contextlib.contextmanager
def every_level() -> Iterator[None]:
    """Log records of every level, whatever an earlier test configured (a CLI test sets
    ``error``), so that capture_logs sees them."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield
    finally:
        structlog.configure(wrapper_class=wrapper)


class StarvedListener:
    """A listener whose accept() fails for want of descriptors ``failures`` times, then hands
    out one socket, then waits for good."""

    def __init__(self, failures: int, sock: trio.socket.SocketType) -> None:
        self.failures = failures
        self.sock: trio.socket.SocketType | None = sock

    async def accept(self) -> tuple[trio.socket.SocketType, tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        if self.sock is None:
            await trio.sleep_forever()
        sock, self.sock = self.sock, None
        return sock, ("127.0.0.9", 4242)


async def test_accept_out_of_descriptors_sheds_the_oldest_pending_and_goes_on():
    async with harness() as h, half_open(h, "127.0.0.3", 3) as streams:
        await wait_for(lambda: h.server._admission.pending == 3)
        ours, theirs = trio.socket.socketpair()
        listener = StarvedListener(5, ours)
        with theirs, every_level(), structlog.testing.capture_logs() as logs:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(h.server._accept, listener, nursery, None)
                    await wait_for(lambda: listener.sock is None)
                    assert all([await dropped(stream, 1) for stream in streams])
                    nursery.cancel_scope.cancel()
            finally:
                if listener.sock is not None:  # never handed out: ours to close
                    listener.sock.close()
        errors = [e for e in logs if e["event"].startswith("cannot accept node connections")]
        assert len(errors) == 1  # once per episode, not once per failure
        assert errors[0]["shed"] == 3
        again = [e for e in logs if e["event"] == "accepting node connections again"]
        assert [e["shed"] for e in again] == [3]
        metrics = h.gateway.metrics
        assert metrics.node_accept_errors.labels("EMFILE")._value.get() == 5
        assert dropped_total(h, "descriptors") == 3
