"""AcceptedSocket on a socket pair, with and without the poller: delivery, control frames, closing
handshakes, the backlog of a node that does not read, fairness, TLS."""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import trustme
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import FrameProtocol

from grass.errors import ProtocolError
from grass.websocket.errors import FramingError, MessageTooBig, TransportClosed
from grass.websocket.poller import Poller
from grass.websocket.transport import (
    CONTROL_FRAMES_BURST,
    CONTROL_FRAMES_PER_SECOND,
    AcceptedSocket,
    ControlFrameFlood,
)
from grass.websocket.wire import LINGER_SECONDS

AUTH = object()  # what deliver() returns for the message "auth": receive() hands it back


class Peer:
    """The node's end: wsproto frames over a trio socket."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.frames = FrameProtocol(True, [])
        self.ws = Connection(ConnectionType.CLIENT)

    async def send(self, *data: bytes | bytearray) -> None:
        await self.stream.send_all(b"".join(bytes(d) for d in data))

    def text(self, text: str) -> bytes:
        return bytes(self.frames.send_data(text))

    async def event(self, kind=object):
        with trio.fail_after(5):
            while True:
                for event in self.ws.events():
                    if isinstance(event, kind):
                        return event
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)

    async def eof(self) -> bytes:
        rest = b""
        with trio.fail_after(5):
            while data := await self.stream.receive_some(65536):
                rest += data
        return rest


@asynccontextmanager
async def pair(*, poller: bool, tls: bool = False) -> AsyncIterator[tuple[AcceptedSocket, Peer]]:
    server_sock, client_sock = socket.socketpair()
    async with trio.open_nursery() as nursery:
        watcher = Poller() if poller else None
        if watcher is not None:
            await nursery.start(watcher.run)
        context = None
        if tls:
            ca = trustme.CA()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("node.test").configure_cert(context)
        node = AcceptedSocket(server_sock, nursery, context, watcher)
        stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(client_sock))
        if tls:
            client_context = ssl.create_default_context()
            ca.configure_trust(client_context)
            stream = trio.SSLStream(stream, client_context, server_hostname="node.test")
            async with trio.open_nursery() as handshake:
                handshake.start_soon(node.start_tls)
                handshake.start_soon(stream.do_handshake)  # type: ignore[attr-defined]
        node.open(64 * 1024)
        try:
            yield node, Peer(stream)
        finally:
            node.abort()
            with trio.move_on_after(1):
                await stream.aclose()
            nursery.cancel_scope.cancel()


def recorder() -> tuple[list, object]:
    got: list = []

    def deliver(message):
        got.append(message)
        return AUTH if message == "auth" else None

    return got, deliver


both = pytest.mark.parametrize("poller", [True, False], ids=["poller", "own-reads"])


@both
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_messages_are_delivered_until_one_needs_the_task(poller, tls):
    async with pair(poller=poller, tls=tls) as (node, peer):
        got, deliver = recorder()
        await peer.send(peer.text("one"), peer.frames.send_data(b"\x02"), peer.text("auth"))
        await peer.send(peer.text("after"))
        assert await node.receive(deliver) is AUTH
        assert got == ["one", b"\x02", "auth"]
        with trio.move_on_after(0.2):
            await node.receive(deliver)
        assert got[-1] == "after"
        node.send("to the node")
        assert (await peer.event(TextMessage)).data == "to the node"


@both
async def test_a_protocol_ping_is_answered_and_a_server_ping_measures_the_round_trip(poller):
    async with pair(poller=poller) as (node, peer), trio.open_nursery() as nursery:
        got, deliver = recorder()
        nursery.start_soon(node.receive, deliver)  # as a session's task always is
        await peer.send(peer.frames.ping(b"hello"))
        assert (await peer.event(Pong)).payload == b"hello"
        node.ping()
        ping = await peer.event(Ping)
        await trio.sleep(0.01)
        await peer.send(peer.frames.pong(ping.payload), peer.text("auth"))
        with trio.fail_after(5):
            while len(got) < 2:  # noqa: ASYNC110
                await trio.sleep(0.001)
        rtt, auth = got
        assert type(rtt) is float
        assert 0.01 <= rtt < 1
        assert auth == "auth"


@both
async def test_a_close_from_the_node_is_echoed_and_the_server_hangs_up(poller):
    async with pair(poller=poller) as (node, peer):
        await peer.send(peer.frames.close(4321, "bye"))
        with pytest.raises(TransportClosed) as caught:
            await node.receive(recorder()[1])
        assert caught.value.code == 4321
        assert (await peer.event(CloseConnection)).code == 4321
        await node.close(1000)
        assert await peer.eof() == b""
        assert node.close_code == 4321


@both
async def test_the_servers_close_waits_for_the_answer_then_hangs_up(poller):
    async with pair(poller=poller) as (node, peer):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.close, 4000, "replaced")
            event = await peer.event(CloseConnection)
            assert (event.code, event.reason) == (4000, "replaced")
            await peer.send(peer.frames.close(4000))
            assert await peer.eof() == b""
        assert node.close_code == 4000


async def test_a_node_that_never_answers_the_close_is_dropped_when_the_caller_gives_up():
    async with pair(poller=True) as (node, peer):
        with trio.move_on_after(0.2):
            await node.close(1001, "going away")
        assert (await peer.event(CloseConnection)).code == 1001
        assert await peer.eof() == b""


@both
async def test_a_frame_breaking_rfc_6455_is_a_1002_and_the_node_sees_the_end(poller):
    async with pair(poller=poller) as (node, peer):
        await peer.send(b"\x81\x02hi")  # unmasked
        with pytest.raises(FramingError):
            await node.receive(recorder()[1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.close, 1002, "unmasked")
            assert (await peer.event(CloseConnection)).code == 1002
            # The server shut its side: the node sees the end without answering, then hangs up.
            assert await peer.eof() == b""
            await peer.stream.aclose()


def raw_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked client frame (zero mask: the payload as it is), fin as asked."""
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else b"\xfe" + n.to_bytes(2, "big")
    return bytes([(0x80 if fin else 0) | opcode]) + length + b"\0\0\0\0" + payload


async def assert_failed_and_dropped(node: AcceptedSocket, peer: Peer, code: int) -> None:
    """The server's close goes out and its half of the stream ends at once: it waits for no
    close frame. It lingers only until the node hangs up too (what it sent is dropped)."""
    with trio.fail_after(LINGER_SECONDS / 2):  # close returns once the node hung up
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.close, code, "failed")
            assert (await peer.event(CloseConnection)).code == code
            assert await peer.eof() == b""
            await peer.stream.aclose()


@both
async def test_a_failed_connection_lingers_a_bounded_while_for_a_node_that_keeps_writing(
    poller, autojump_clock
):
    """A node that keeps writing after the frame that failed it still reads the close code
    (a reset would lose it), and the server hangs up after LINGER_SECONDS whatever it does."""
    async with pair(poller=poller) as (node, peer), trio.open_nursery() as nursery:
        await peer.send(raw_frame(1, b"\xff"))
        with pytest.raises(ProtocolError) as caught:
            await node.receive(recorder()[1])

        async def keep_writing() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while True:
                    await peer.send(raw_frame(1, b"{}"))
                    await trio.sleep(0.1)

        nursery.start_soon(keep_writing)
        started = trio.current_time()
        await node.close(caught.value.ws_close_code, "failed")
        assert trio.current_time() - started == pytest.approx(LINGER_SECONDS, abs=0.2)
        assert (await peer.event(CloseConnection)).code == 1007
        nursery.cancel_scope.cancel()


@both
async def test_endless_empty_continuation_frames_fail_the_connection_1009(poller):
    """The issue's socket: one text fragment, then empty continuations without end."""
    async with pair(poller=poller) as (node, peer), trio.open_nursery() as nursery:

        async def stream() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await peer.send(raw_frame(1, b"{", fin=False))
                while True:
                    await peer.send(raw_frame(0, fin=False) * 1000)

        nursery.start_soon(stream)
        with trio.fail_after(5), pytest.raises(MessageTooBig):
            await node.receive(recorder()[1])
        assert node._frames is not None
        assert node._frames.buffered == 0  # what it held is let go
        await node.close(1009)
        nursery.cancel_scope.cancel()


@both
@pytest.mark.parametrize(
    "data",
    [
        raw_frame(8, b"\x03\xec"),  # a close with code 1004, which may not be sent
        raw_frame(8, b"\x03"),  # a close with a one-byte payload
        b"\x81\x02hi",  # unmasked
        raw_frame(1, b"\xff"),  # not UTF-8
    ],
    ids=["close-1004", "close-one-byte", "unmasked", "utf8"],
)
async def test_a_failed_connection_is_closed_without_waiting_for_the_node(poller, data):
    """RFC 6455 §7.1.7: after a malformed close (Autobahn's case) or any frame that fails the
    connection, the server sends its close and hangs up; the node never answers here."""
    async with pair(poller=poller) as (node, peer):
        await peer.send(data)
        with pytest.raises(ProtocolError) as caught:
            await node.receive(recorder()[1])
        await assert_failed_and_dropped(node, peer, caught.value.ws_close_code)


@both
async def test_a_control_frame_flood_fails_the_connection_1008(poller):
    async with pair(poller=poller) as (node, peer):
        await peer.send(peer.frames.ping(b"x") * (CONTROL_FRAMES_BURST + 50))
        with trio.fail_after(5), pytest.raises(ControlFrameFlood) as caught:
            await node.receive(recorder()[1])
        assert caught.value.ws_close_code == 1008
        await assert_failed_and_dropped(node, peer, 1008)


@both
async def test_control_frames_within_the_allowance_are_answered(poller, autojump_clock):
    async with pair(poller=poller) as (node, peer), trio.open_nursery() as nursery:
        nursery.start_soon(node.receive, recorder()[1])
        for i in range(3 * CONTROL_FRAMES_BURST):  # three bursts' worth, at the allowed pace
            await peer.send(peer.frames.ping(b"%d" % i))
            assert (await peer.event(Pong)).payload == b"%d" % i
            await trio.sleep(1 / CONTROL_FRAMES_PER_SECOND)
        nursery.cancel_scope.cancel()


@both
async def test_a_turn_is_counted_in_frames_not_in_messages(poller):
    """Messages of many fragments: others run at least every other message (before, a turn
    delivered 16 messages, whatever number of frames they took)."""
    fragments = 100
    message = raw_frame(1, b"m", fin=False) + raw_frame(0, fin=False) * (fragments - 2)
    message += raw_frame(0, b"!")
    async with pair(poller=poller) as (node, peer):
        await peer.send(message * 20 + peer.text("auth"))
        got, deliver = recorder()
        seen: set[int] = set()

        async def other() -> None:
            while len(got) < 21:
                seen.add(len(got))
                await trio.lowlevel.checkpoint()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)
                await node.receive(deliver)
        assert got == ["m!"] * 20 + ["auth"]
        # A turn ends within a message once its frames are spent: at most two per turn.
        counts = sorted(seen | {0, 20})
        assert max(b - a for a, b in itertools.pairwise(counts)) <= 2, counts


async def test_the_backlog_of_a_node_that_does_not_read_drains_in_order():
    async with pair(poller=True) as (node, peer):
        node._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        messages = [f"{i:05d}" + "x" * 20_000 for i in range(40)]
        for text in messages:
            node.send(text)
        assert node.backlog > 1
        # Pings from the node while it does not read: only the latest is answered, once the
        # backlog is written (RFC 6455 §5.5.3).
        await peer.send(peer.frames.ping(b"1"), peer.frames.ping(b"2"), peer.text("auth"))
        got, deliver = recorder()
        await node.receive(deliver)
        assert got == ["auth"]
        received = []
        while len(received) < len(messages):
            event = await peer.event((TextMessage, Pong))
            if isinstance(event, Pong):
                pytest.fail("a pong overtook the backlog")
            received.append(event.data)
            while not event.message_finished:
                event = await peer.event(TextMessage)
                received[-1] += event.data
        assert received == messages
        assert node.backlog == 0
        assert (await peer.event(Pong)).payload == b"2"
        with trio.move_on_after(0.1):
            await peer.event(Pong)
            pytest.fail("the older ping was answered too")


async def test_a_flooding_node_lets_the_others_run():
    async with pair(poller=True) as (node, peer):
        await peer.send(*(peer.text(f"m{i}") for i in range(2000)), peer.text("auth"))
        got, deliver = recorder()
        progress = []

        async def other() -> None:
            while len(got) < 2001:
                progress.append(len(got))
                await trio.lowlevel.checkpoint()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)
                await node.receive(deliver)
        assert len(got) == 2001
        assert len([n for n in progress if 0 < n < 2000]) > 10  # ran between the deliveries


async def test_a_bug_in_delivering_reaches_the_sessions_task_not_the_poller():
    async with pair(poller=True) as (node, peer):

        def deliver(message):
            raise ZeroDivisionError(message)

        await peer.send(peer.text("boom"))
        with pytest.raises(ZeroDivisionError):
            await node.receive(deliver)
        # The poller still serves: the next read works.
        _, ok = recorder()
        await peer.send(peer.text("auth"))
        assert await node.receive(ok) is AUTH


async def test_abort_wakes_a_receiving_task():
    async with pair(poller=True) as (node, peer):
        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                with pytest.raises(TransportClosed):
                    await node.receive(recorder()[1])

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            node.abort()
        assert await peer.eof() == b""
