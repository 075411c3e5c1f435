"""RFC 6455 framing (grass.websocket.frames) without sockets, and against wsproto as the reference.

wsproto's frame protocol is the conformance reference here (it passes the Autobahn suite): any
stream of client frames, cut anywhere, must give the same messages and the same close code
through ``FrameReader`` as through wsproto's server side.
"""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import FrameProtocol

from grass.websocket.errors import FramingError, InvalidUtf8, MessageTooBig
from grass.websocket.frames import (
    BINARY,
    CLOSE,
    DEFAULT_MAX_FRAGMENTS,
    PING,
    PONG,
    TEXT,
    FrameReader,
    close_frame,
    close_payload,
    control_frame,
    text_frame,
)

BIG = 1 << 20


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,  # force the 7-bit length field (126, 127: non-minimal)
) -> bytes:
    """A client frame, exactly as asked (including what RFC 6455 forbids)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    code = length if length is not None else (n if n < 126 else 126 if n < 65536 else 127)
    mask_bit = 0x80 if masked else 0
    head += bytes([mask_bit | code])
    if code == 126:
        head += struct.pack("!H", n)
    elif code == 127:
        head += struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_all(data: bytes, *, chunk: int | None = None, max_size: int = BIG) -> list:
    reader = FrameReader(max_size)
    out: list = []
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        reader.feed(data[i : i + step])
        while (message := reader.next()) is not None:
            out.append(message)
    return out


# -- messages ---------------------------------------------------------------------------------


def test_text_binary_and_control_frames():
    client = FrameProtocol(True, [])
    data = (
        bytes(client.send_data("héllo"))
        + bytes(client.send_data(b"\x00\x01"))
        + bytes(client.ping(b"p"))
        + bytes(client.pong(b"q"))
        + bytes(client.send_data("x" * 70_000))
        + bytes(client.close(1000, "bye"))
    )
    for chunk in (None, 1, 7, 4096):
        assert read_all(data, chunk=chunk) == [
            "héllo",
            b"\x00\x01",
            (PING, b"p"),
            (PONG, b"q"),
            "x" * 70_000,
            (CLOSE, b"\x03\xe8bye"),
        ]


def test_fragments_are_joined_and_control_frames_may_interleave():
    snowman = "☃".encode()  # three bytes, split across fragments below
    data = (
        frame(TEXT, b"a" + snowman[:1], fin=False)
        + frame(PING, b"in between")
        + frame(0, snowman[1:], fin=False)
        + frame(0, b"z", fin=True)
        + frame(BINARY, b"\x01", fin=False)
        + frame(0, b"\x02")
    )
    assert read_all(data, chunk=3) == [(PING, b"in between"), "a☃z", b"\x01\x02"]


def test_after_a_close_frame_nothing_is_read():
    data = frame(CLOSE, b"\x03\xe8") + frame(TEXT, b"late") + b"\xff\xff garbage"
    assert read_all(data) == [(CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (frame(TEXT, b"x", masked=False), "unmasked"),
        (frame(TEXT, b"x", rsv=4), "rsv1 (no permessage-deflate)"),
        (frame(TEXT, b"x", rsv=1), "rsv3"),
        (frame(0x3, b"x"), "reserved data opcode"),
        (frame(0xB, b"x"), "reserved control opcode"),
        (frame(PING, b"x", fin=False), "fragmented control frame"),
        (frame(PING, b"x" * 126), "control frame over 125 bytes"),
        (frame(0, b"x"), "continuation without a message"),
        (frame(TEXT, b"x", fin=False) + frame(TEXT, b"y"), "new message inside a fragmented one"),
        (frame(TEXT, b"x" * 10, length=126), "2-byte length for 10 bytes"),
        (frame(TEXT, b"x" * 200, length=127), "8-byte length for 200 bytes"),
        (b"\x81\xff" + (1 << 63).to_bytes(8, "big"), "length with the top bit set"),
    ],
)
def test_frames_breaking_rfc_6455_fail_1002_and_stop_the_reader(data, why):
    reader = FrameReader(BIG)
    reader.feed(data + frame(TEXT, b"after"))

    def read() -> None:
        while reader.next() is not None:
            pass

    with pytest.raises(FramingError) as caught:
        read()
    assert caught.value.ws_close_code == 1002, why
    assert reader.failed
    reader.feed(frame(TEXT, b"more"))
    assert reader.next() is None


def stopped(reader: FrameReader) -> bool:
    """The reader failed, holds nothing, and reads nothing more."""
    reader.feed(frame(TEXT, b"more"))
    return reader.failed and reader.buffered == 0 and reader.next() is None


def test_invalid_utf8_fails_1007_and_the_reader_stops():
    # Failing the connection (RFC 6455 §7.1.7): nothing after it is read, not even a close.
    reader = FrameReader(BIG)
    reader.feed(frame(TEXT, b'{"a":"\xff"}') + frame(CLOSE, b"\x03\xe8"))
    with pytest.raises(InvalidUtf8) as caught:
        reader.next()
    assert caught.value.ws_close_code == 1007
    assert stopped(reader)


def test_invalid_utf8_in_a_fragment_fails_before_the_message_ends():
    reader = FrameReader(BIG)
    reader.feed(frame(TEXT, b"ok \xc3\x28", fin=False))  # \xc3 then not a continuation byte
    with pytest.raises(InvalidUtf8):
        reader.next()
    assert stopped(reader)


@pytest.mark.parametrize("fragmented", [False, True], ids=["one frame", "continuation"])
def test_invalid_utf8_fails_as_its_bytes_arrive_not_when_the_frame_ends(fragmented):
    reader = FrameReader(BIG)
    bad = b"x" * 10 + b"\xff" + b"y" * 60_000
    if fragmented:  # the first fragment ends inside a character; the next one breaks it
        reader.feed(frame(TEXT, b"ab\xc3", fin=False))
        assert reader.next() is None
        bad = b"\x28" + bad
    data = frame(0 if fragmented else TEXT, bad)
    reader.feed(data[:20])  # the header and a few bytes: the rest is still on its way
    with pytest.raises(InvalidUtf8):
        reader.next()
    assert stopped(reader)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=200),
    st.lists(st.integers(1, 50), max_size=5),
    st.lists(st.integers(1, 300), max_size=20),
)
def test_valid_text_in_any_fragments_and_reads_is_read_whole(text, sizes, cuts):
    data = text.encode()
    bounds = sorted({0, len(data), *(n for n in sizes if n < len(data))})
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    stream = b"".join(
        frame(0 if i else TEXT, part, fin=i == len(parts) - 1) for i, part in enumerate(parts)
    )
    out, start, reader = [], 0, FrameReader(BIG)
    for end in [*sorted(c for c in cuts if c < len(stream)), len(stream)]:
        reader.feed(stream[start:end])
        start = max(start, end)
        while (message := reader.next()) is not None:
            out.append(message)
    assert out == [text]


def test_a_message_over_the_limit_is_refused_from_its_header():
    reader = FrameReader(100)
    big = frame(TEXT, b"x" * 70_000)
    reader.feed(big[:14])  # the header alone: refused before any payload is buffered
    with pytest.raises(MessageTooBig) as caught:
        reader.next()
    assert caught.value.ws_close_code == 1009
    assert stopped(reader)


def test_a_fragmented_message_over_the_limit_is_refused_and_its_parts_let_go():
    reader = FrameReader(100)
    reader.feed(frame(TEXT, b"x" * 60, fin=False))
    assert reader.next() is None
    assert reader.buffered == 60
    reader.feed(frame(0, b"y" * 60, fin=False))
    with pytest.raises(MessageTooBig):
        reader.next()
    assert stopped(reader)


def test_empty_continuation_frames_are_capped_in_number():
    """One text fragment, then empty continuations without end (the issue's 91 -> 351 MB from
    one socket): they never reach the size limit, the frame cap stops them."""
    reader = FrameReader(BIG)
    reader.feed(frame(TEXT, b"{", fin=False))
    assert reader.next() is None
    empty = frame(0, b"", fin=False)

    def stream() -> None:
        for _ in range(10_000):
            reader.feed(empty)
            assert reader.next() is None

    with pytest.raises(MessageTooBig) as caught:
        stream()
    assert caught.value.ws_close_code == 1009
    assert reader.frames_read == DEFAULT_MAX_FRAGMENTS
    assert stopped(reader)


def test_a_message_in_exactly_max_fragments_frames_is_read():
    three = frame(TEXT, b"a", fin=False) + frame(0, b"", fin=False) + frame(0, b"c")
    reader = FrameReader(BIG, max_fragments=3)
    reader.feed(three + three)
    assert [reader.next(), reader.next()] == ["ac", "ac"]
    reader = FrameReader(BIG, max_fragments=2)
    reader.feed(three)
    with pytest.raises(MessageTooBig):
        reader.next()


def test_exactly_the_limit_is_accepted():
    assert read_all(frame(TEXT, b"x" * 100), max_size=100) == ["x" * 100]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x0f\xa0done", (4000, "done")),
        (b"\x0b\xb8", (3000, "")),
        (b"\x03\xf3", (1011, "")),
    ],
)
def test_close_payloads(payload, expected):
    assert close_payload(payload) == expected


@pytest.mark.parametrize(
    "payload", [b"\x03", b"\x00\x00", b"\x03\xe7", b"\x03\xec", b"\x03\xed", b"\x03\xee",
                b"\x03\xf7", b"\x07\xd0", b"\x13\x88"],
)  # fmt: skip
def test_close_codes_a_peer_may_not_send_fail_1002(payload):
    with pytest.raises(FramingError):
        close_payload(payload)


def test_a_close_reason_that_is_not_utf8_fails_1007():
    with pytest.raises(InvalidUtf8):
        close_payload(b"\x03\xe8\xff")


# -- what the server sends, read by wsproto as a client ----------------------------------------


def client_events(data: bytes) -> list:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    return list(client.events())


def test_server_frames_read_by_a_client():
    for text in ("", "pong", "é" * 100, "x" * 70_000):
        (event,) = client_events(text_frame(text))
        assert isinstance(event, TextMessage)
        assert event.data == text
        assert event.message_finished
    (ping,) = client_events(control_frame(PING, b"abcd"))
    assert isinstance(ping, Ping)
    assert ping.payload == b"abcd"
    (close,) = client_events(close_frame(4003, "é" * 100))  # the reason is cut to 123 bytes
    assert isinstance(close, CloseConnection)
    assert close.code == 4003
    assert close.reason == "é" * 61
    (empty,) = client_events(close_frame(None))
    assert empty.code == 1005
    with pytest.raises(ValueError, match="125"):
        control_frame(PING, b"x" * 126)


# -- any stream against wsproto ---------------------------------------------------------------

payloads = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40),
    st.sampled_from([b"\xff", b"\xc3", b"\xe2\x98", "☃".encode(), b""]),
)
close_codes = st.sampled_from([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1011, 1015, 999,
                               2000, 3000, 4000, 4999, 5000])  # fmt: skip
frames_ = st.one_of(
    st.builds(
        frame,
        st.sampled_from([TEXT, BINARY, 0]),
        payloads,
        fin=st.booleans(),
        rsv=st.sampled_from([0, 0, 0, 0, 4]),
        masked=st.sampled_from([True] * 9 + [False]),
    ),
    st.builds(frame, st.sampled_from([PING, PONG]), st.binary(max_size=10)),
    st.builds(lambda c, r: frame(CLOSE, c.to_bytes(2, "big") + r), close_codes, payloads),
    st.builds(frame, st.sampled_from([0x3, 0xB]), st.binary(max_size=3)),
    st.builds(lambda p: frame(TEXT, p, length=126), st.binary(max_size=20)),
)


def reference(data: bytes) -> tuple[list, int | None]:
    """wsproto's server side: messages (fragments joined) and the close code."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    out: list = []
    parts: list = []
    for event in server.events():
        if isinstance(event, (TextMessage, BytesMessage)):
            parts.append(event.data)
            if event.message_finished:
                out.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))
                parts = []
        elif isinstance(event, (Ping, Pong)):
            out.append((PING if isinstance(event, Ping) else PONG, bytes(event.payload)))
        elif isinstance(event, CloseConnection):
            return out, int(event.code)
    return out, None


def ours(data: bytes, cuts: list[int]) -> tuple[list, int | None]:
    reader = FrameReader(BIG)
    out: list = []
    start = 0
    try:
        for end in [*sorted(cuts), len(data)]:
            reader.feed(data[start:end])
            start = max(start, end)
            while (message := reader.next()) is not None:
                if type(message) is tuple and message[0] == CLOSE:
                    return out, close_payload(message[1])[0]
                out.append(message)
    except (FramingError, InvalidUtf8) as exc:
        return out, exc.ws_close_code
    return out, None


@settings(max_examples=400, deadline=None)
@given(st.lists(frames_, max_size=8), st.lists(st.integers(0, 400), max_size=6))
def test_any_stream_reads_as_wsproto_reads_it(frames_list, cuts):
    data = b"".join(frames_list)
    expected_messages, expected_code = reference(data)
    messages, code = ours(data, [c for c in cuts if c <= len(data)])
    assert (messages, code) == (expected_messages, expected_code)
