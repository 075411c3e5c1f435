"""Campaign 3: the RFC 6455 frame codec (grass/websocket/frames.py) and the real transport under
hostile frame streams.

Volume runs on the sans-I/O ``FrameReader``: well-formed traffic (fragmented messages, control
frames between fragments), then one breach (reserved bits, bad opcodes, unmasked frames, lengths
non-minimal or over 2^63, messages over the cap, invalid UTF-8 split across fragments, malformed
CLOSE payloads), then junk, all cut at arbitrary points: the reader must hand out the messages
before the breach and then raise the breach's error (close code 1002, 1007 or 1009), holding no
more than the cap. The same breaches then go to a signed-in node of the whole server over
loopback, which must close with that code while the canary keeps its latency.

Storms are separate: one fragment then endless empty continuations, and control frames by the
hundred thousand. Today the codec keeps every empty fragment (#13 finding 3).
"""

from __future__ import annotations

import gc
import sys
import types

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from wsproto.events import CloseConnection, Pong

from grass.errors import ProtocolError
from grass.websocket.frames import CLOSE, PING, PONG, TEXT, FrameReader, close_payload
from tests.hostile import wire
from tests.hostile.campaign import World, count, hostile_settings, open_world
from tests.nodes.test_gateway import RawNode
from tests.websocket.test_frames import frame

pytestmark = pytest.mark.slow

#: A fragment storm's length: far beyond any sensible cap on fragments per message.
STORM = 200_000
#: The canary's worst wait while one node floods PING frames.
FLOOD_LATENCY_BOUND = 0.5
#: What the reader may hold while a storm blows (its cap on a message is 64 KiB; a batch of
#: frames fed at once is up to 130 KiB).
STORM_MEMORY = 1 << 20


def read(data: bytes, cuts: list[int]) -> tuple[list[object], int | None]:
    """Messages (control frames left out) and the close code a reader ends with."""
    reader = FrameReader(wire.MAX_MESSAGE)
    out: list[object] = []
    start = 0
    try:
        for end in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            reader.feed(data[start:end])
            start = max(start, end)
            while (message := reader.next()) is not None:
                if isinstance(message, tuple):
                    if message[0] == CLOSE:
                        close_payload(message[1])  # a malformed one raises
                        return out, None
                    continue
                out.append(message)
                assert len(message) <= wire.MAX_MESSAGE
    except ProtocolError as exc:
        return out, exc.ws_close_code
    return out, None


@hostile_settings(4200)
@given(
    prefix=wire.PREFIX,
    breach=wire.VIOLATIONS,
    junk=st.binary(max_size=40),
    cuts=st.lists(st.integers(0, 1 << 17), max_size=5),
)
def test_the_codec_reads_up_to_a_breach_and_fails_with_its_code(prefix, breach, junk, cuts):
    data = b"".join(frames for frames, _ in prefix) + breach[0] + junk
    expected = [message for _, message in prefix if message is not None]
    assert read(data, cuts) == (expected, breach[1])
    count("frames/codec")


# -- storms --------------------------------------------------------------------------------------


def retained(root: object) -> int:
    """Bytes held by ``root`` and what it refers to (shared objects, types and modules apart):
    the reader's buffers, parts and decoder, whatever they are named."""
    seen, stack, total = {id(root)}, [root], 0
    while stack:
        obj = stack.pop()
        total += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not isinstance(ref, type | types.ModuleType):
                seen.add(id(ref))
                stack.append(ref)
    return total


def storm(reader: FrameReader, frames: bytes, rounds: int, batch: int = 1000) -> int | None:
    """Feed ``frames`` ``rounds`` times, ``batch`` copies a feed: the close code the reader
    fails with, or None if it took everything, holding less than STORM_MEMORY throughout
    (checked after batches 1, 2, 4, 8...)."""
    chunk = frames * batch
    try:
        for n in range(1, rounds // batch + 1):
            reader.feed(chunk)
            while reader.next() is not None:
                pass
            if n & (n - 1) == 0 or n == rounds // batch:
                assert retained(reader) < STORM_MEMORY, f"{retained(reader)} bytes held"
    except ProtocolError as exc:
        return exc.ws_close_code
    return None


@pytest.mark.parametrize("between", [b"", frame(PING, b"p")], ids=["plain", "with-pings"])
def test_a_fragment_storm_is_refused_with_bounded_memory(between):
    reader = FrameReader(wire.MAX_MESSAGE)
    reader.feed(frame(TEXT, b"{", fin=False))
    assert reader.next() is None
    code = storm(reader, frame(0, b"", fin=False) + between, STORM)
    count("frames/codec")
    assert code in {1002, 1008, 1009}, f"{STORM} empty continuations taken"


def test_a_control_frame_flood_costs_the_codec_nothing_it_keeps():
    """PINGs by the hundred thousand: each is handed out as it comes, none is kept (bounding
    how many a connection may send in a turn is the transport's business)."""
    reader = FrameReader(wire.MAX_MESSAGE)
    assert storm(reader, frame(PING, b"p" * 125), STORM) is None
    count("frames/codec")


# -- the real transport ------------------------------------------------------------------------


async def play_breach(world: World, prefix: list[tuple[bytes, object]], breach: tuple) -> None:
    async with RawNode.connect(world.server.node_port) as node:
        await wire.signed_in(node, world.node_key)
        await node.stream.send_all(b"".join(frames for frames, _ in prefix) + breach[0])
        for _ in prefix:
            await wire.expect_pong(node)
        reply = await wire.next_reply(node)
        assert isinstance(reply, CloseConnection), reply
        assert reply.code == breach[1], (reply, breach)


async def test_the_server_closes_a_breaching_node_with_its_code():
    binary = st.just((frame(2, b"\x00\x01"), 1003))  # binary frames are refused by the session
    async with open_world("frames") as world:

        @hostile_settings(200)
        @given(prefix=wire.PING_PREFIX, breach=wire.VIOLATIONS | binary)
        def examples(prefix: list[tuple[bytes, object]], breach: tuple) -> None:
            world.play(play_breach, world, prefix, breach)
            count(world.campaign)

        await world.drive(examples)


async def flood(world: World, frames: bytes, rounds: int, opening: bytes = b"") -> object:
    """A signed-in node sends ``opening``, then ``frames`` ``rounds`` times without reading,
    then a PING frame; reading again, what it gets: a close (its code), or the PONG (True)."""
    async with RawNode.connect(world.server.node_port) as node:
        await wire.signed_in(node, world.node_key)
        chunk = frames * 1000
        try:
            with trio.fail_after(30):
                await node.stream.send_all(opening)
                for _ in range(rounds // 1000):
                    await node.stream.send_all(chunk)
                await node.stream.send_all(frame(PING, b"last"))
                outcome = await _last_pong_or_close(node)
        except trio.BrokenResourceError:
            outcome = "dropped"
        count(world.campaign)
        return outcome


async def _last_pong_or_close(node: RawNode) -> object:
    while True:
        for event in node.ws.events():
            if isinstance(event, CloseConnection):
                return event.code
            if isinstance(event, Pong) and bytes(event.payload) == b"last":
                return True
        data = await node.stream.receive_some(65536)
        if not data:
            return "dropped"
        node.ws.receive_data(data)


#: How a flooder's connection may end: the server hangs up on a connection it failed without
#: reading on (RFC 6455 §7.1.7), so a flooder still writing sees its stream broken ("dropped")
#: as often as it reads the close code; the canary and the world's checks tell a crash apart.
FLOODER_CLOSED = {1008, 4003, "dropped"}


async def test_a_pong_frame_flood_leaves_the_canary_its_latency():
    """Unsolicited PONG frames by the hundred thousand: control frames past the node's
    allowance fail its connection (1008); the canary keeps its latency either way."""
    async with open_world("frames") as world:
        outcome = await flood(world, frame(PONG, b"p"), STORM)
        assert outcome is True or outcome in FLOODER_CLOSED, outcome
        assert world.canary.worst < FLOOD_LATENCY_BOUND, world.canary.worst


async def test_a_control_frame_flood_leaves_the_canary_its_latency():
    async with open_world("frames") as world:
        outcome = await flood(world, frame(PING, b"p"), STORM)
        assert outcome is True or outcome in FLOODER_CLOSED, outcome
        # Tighter than LATENCY_BOUND: a flood that is handled fairly leaves the canary its
        # usual tens of milliseconds; today's stalls (1.2 to 3 s here) fail this either way.
        assert world.canary.worst < FLOOD_LATENCY_BOUND, world.canary.worst


async def test_a_fragment_storm_on_a_live_node_is_closed():
    async with open_world("frames") as world:
        opening = frame(TEXT, b"{", fin=False)
        outcome = await flood(world, frame(0, b"", fin=False), STORM // 2, opening)
        assert outcome in {1002, 1008, 1009, "dropped"}, outcome
