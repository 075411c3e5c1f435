"""Hostile node traffic: protocol messages (campaign 2) and RFC 6455 frame streams (campaign 3),
each with the outcome the server owes it, and a raw node to play them over loopback.

Outcomes come from the sans-I/O cores the server itself runs (``NodeConnection`` for messages,
the frame rules of ``grass.websocket.frames`` for frames): what the loopback campaigns check is that the
whole server (transport, session, gateway) keeps to them, and that nothing else happens (no
crash, no other connection disturbed).
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import trio
from hypothesis import strategies as st
from wsproto.events import CloseConnection, Event, Pong, TextMessage

from grass.errors import ProtocolError
from grass.nodes.protocol import Authenticated, NodeConnection, Ping
from grass.websocket.frames import BINARY, CLOSE, PING, PONG, TEXT
from tests.hostile.strategies import SURROGATES, Pairs, leaves, nesting, values, write
from tests.nodes.test_gateway import PING as PING_MESSAGE
from tests.nodes.test_gateway import RawNode, auth_answer
from tests.websocket.test_frames import frame

MAX_MESSAGE = 64 * 1024  # node.max_message_size's default, which the campaigns' server runs
DEVICE_ID = "0b6f1d52-8e1c-4f0e-9a39-1f1e7f6a2b10"
PONG_ECHO = '{"id":"0b6f1d52-8e1c-4f0e-9a39-1f1e7f6a2b10","origin_action":"PONG"}'

# -- campaign 2: messages ---------------------------------------------------------------------

_TAGS = st.sampled_from(
    ["PING", "PONG", "AUTH", "HTTP_REQUEST", "ERROR", "ping", "DANCE", "", "PING\x00"]
) | leaves(surrogates=True)
_IDS = st.one_of(
    st.uuids().map(str),
    st.text(min_size=1, max_size=20),
    st.sampled_from(["", "i" * 128, "i" * 129, "i" * 60_000]),
    SURROGATES,
    leaves(surrogates=True),
)
_AUTH = {
    "browser_id": DEVICE_ID,
    "user_id": "u" * 21,
    "user_agent": "Mozilla/5.0",
    "timestamp": 0,
    "device_type": "extension",
    "version": "4.26.2",
    "extension_id": "ilehaonighjijnmpnagapkhpcdbhclfg",
}
_RESULTS = st.fixed_dictionaries(
    {}, optional={k: st.just(v) | values(surrogates=True) for k, v in _AUTH.items()}
)
_SHAPED_KEYS = {
    "id": _IDS,
    "action": _TAGS,
    "origin_action": _TAGS,
    "version": leaves(surrogates=True),
    "data": values(surrogates=True),
    "result": _RESULTS | values(surrogates=True),
}
_BROKEN = st.sampled_from(
    [
        '{"id":',
        '{"id":"a","action":"PING"',
        "{'id':1}",
        "NaN",
        "1e400",
        "9" * 5000,
        "[]",
        "null",
        "{}",
        '{"id":"a","action":"PING"}x',
        '\ufeff{"id":"a","action":"PING"}',
        '{"id":"a","action":"PING","version":1e400}',
        '{"id":"a","id":"b","action":"PING"}',
        '{"id":"\\udfff","action":"PING"}',
    ]
)


def _big_id(size: int) -> str:
    return '{"id":"' + "i" * size + '","action":"PING"}'


@functools.cache
def node_messages() -> st.SearchStrategy[str]:
    """One hostile message's text: wrong shapes and tags, huge ids, surrogates, duplicate keys,
    broken JSON, nesting, sizes at and over node.max_message_size."""
    shaped = st.fixed_dictionaries({}, optional=_SHAPED_KEYS).map(write)
    repeated = st.lists(
        st.tuples(st.sampled_from(sorted(_SHAPED_KEYS)), values(surrogates=True)), max_size=6
    ).map(lambda items: write(Pairs(tuple(items))))
    sized = st.sampled_from([MAX_MESSAGE - 40, MAX_MESSAGE - 25, MAX_MESSAGE, 70_000]).map(_big_id)
    return st.one_of(
        shaped,
        repeated,
        _BROKEN,
        st.text(max_size=60),
        nesting().map(write),
        values(surrogates=True).map(write),
        sized,
    )


_FEW = st.lists(node_messages(), min_size=1, max_size=4)
_FLOOD = st.builds(
    lambda n, text: [text] * n,
    st.integers(50, 300),
    st.sampled_from([PONG_ECHO, PING_MESSAGE, '{"id":"x","action":"DANCE"}', "garbage"]),
)
#: What a node sends in one go: a few hostile messages or, one time in ten, a flood of one.
NODE_BURSTS = st.integers(0, 9).flatmap(lambda n: _FLOOD if n == 0 else _FEW)


def authenticated(auth_id: str = "auth") -> NodeConnection:
    """The protocol core past AUTH, as the server's session for a node is."""
    conn = NodeConnection(max_message_size=MAX_MESSAGE, new_id=lambda: auth_id)
    request = json.loads(conn.auth_request())
    event = conn.receive_text(auth_answer(request, "u" * 21, DEVICE_ID))
    assert type(event) is Authenticated
    return conn


def outcomes(conn: NodeConnection, messages: list[str]) -> list[tuple[str, Any]]:
    """What the server owes each message, by the protocol core: ``("PONG", None)``,
    ``("ERROR", code)``, or ``("close", close code)`` (and nothing after it); a PONG echo is
    owed nothing."""
    owed: list[tuple[str, Any]] = []
    for text in messages:
        try:
            event = conn.receive_text(text)
        except ProtocolError as exc:
            if exc.ws_close_code is None:
                owed.append(("ERROR", exc.code))
                continue
            owed.append(("close", exc.ws_close_code))
            break
        # Hostile messages never carry the AUTH request's id: no AUTH answer is ever valid.
        assert type(event) is not Authenticated, text
        if type(event) is Ping:
            owed.append(("PONG", None))
    return owed


# -- campaign 3: frames -----------------------------------------------------------------------


def _close_code_frame(code: int) -> bytes:
    return frame(CLOSE, code.to_bytes(2, "big") + b"bye")


def _length_header(length: int) -> bytes:
    return b"\x81\xff" + length.to_bytes(8, "big") + b"\x00\x00\x00\x00"


#: (frames, the close code they must end with): one breach of RFC 6455 or of the size cap.
VIOLATIONS = st.one_of(
    st.integers(1, 7).map(lambda rsv: (frame(TEXT, b"x", rsv=rsv), 1002)),
    st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]).map(lambda op: (frame(op), 1002)),
    st.sampled_from([TEXT, BINARY, PING]).map(lambda op: (frame(op, b"x", masked=False), 1002)),
    st.sampled_from([PING, PONG, CLOSE]).map(lambda op: (frame(op, fin=False), 1002)),
    st.just((frame(PING, b"p" * 126), 1002)),
    st.just((frame(0, b"x"), 1002)),  # a continuation with nothing to continue
    st.just((frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002)),
    st.sampled_from([126, 127]).map(lambda code: (frame(TEXT, b"x" * 10, length=code), 1002)),
    st.sampled_from([1 << 63, (1 << 64) - 1]).map(lambda n: (_length_header(n), 1002)),
    st.sampled_from([MAX_MESSAGE + 1, 1 << 40, (1 << 63) - 1]).map(
        lambda n: (_length_header(n), 1009)
    ),
    st.just((frame(TEXT, b"a" * 40_000, fin=False) + frame(0, b"b" * 40_000), 1009)),
    st.sampled_from([b'{"a":"\xff"}', b"\xed\xa0\x80", b"\xc0\x80"]).map(
        lambda p: (frame(TEXT, p), 1007)
    ),
    st.just((frame(TEXT, b"ab\xe2\x82", fin=False) + frame(0, b"("), 1007)),  # split across
    st.just((frame(TEXT, b"ab\xe2", fin=False) + frame(0, b"\x82", fin=False) + frame(0), 1007)),
    st.just((frame(CLOSE, b"\x03"), 1002)),
    st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]).map(
        lambda code: (_close_code_frame(code), 1002)
    ),
    st.just((frame(CLOSE, b"\x03\xe8\xff\xfe"), 1007)),
)

_CONTROLS = st.sampled_from([PING, PONG]).flatmap(
    lambda op: st.binary(max_size=125).map(lambda p: (frame(op, p), None))
)


def _fragments(payload: bytes, opcode: int, cuts: list[int], pings: int) -> bytes:
    """A message cut into fragments at ``cuts``, with ``pings`` control frames between them."""
    edges = sorted({c % (len(payload) + 1) for c in cuts})
    parts = [payload[a:b] for a, b in zip([0, *edges], [*edges, len(payload)], strict=True)]
    out = b""
    for i, part in enumerate(parts):
        out += frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1)
        if i < len(parts) - 1 and i < pings:
            out += frame(PING, b"mid")
    return out


def _message(payload: bytes, opcode: int) -> str | bytes:
    return payload.decode() if opcode == TEXT else payload


def messages_as_frames(texts: st.SearchStrategy[bytes], opcode: int = TEXT) -> Any:
    """(frames, the message they carry) for messages cut into up to four fragments."""
    return st.builds(
        lambda payload, cuts, pings: (
            _fragments(payload, opcode, cuts, pings),
            _message(payload, opcode),
        ),
        texts,
        st.lists(st.integers(0, 1 << 16), max_size=3),
        st.integers(0, 3),
    )


#: Well-formed traffic before a breach: text and binary messages (fragmented or not), with
#: control frames between them.
PREFIX = st.lists(
    messages_as_frames(st.text(max_size=300).map(str.encode))
    | messages_as_frames(st.binary(max_size=300), BINARY)
    | _CONTROLS,
    max_size=4,
)

#: Before a breach on a live node: JSON PINGs (fragmented or not), each owed a PONG.
PING_PREFIX = st.lists(messages_as_frames(st.just(PING_MESSAGE.encode())), max_size=4)


# -- a raw node on loopback --------------------------------------------------------------------


async def next_reply(node: RawNode) -> TextMessage | CloseConnection:
    """The next text message or close from the server (control frames are skipped)."""
    with trio.fail_after(10):
        while True:
            for event in node.ws.events():
                if isinstance(event, TextMessage | CloseConnection):
                    return event
                _skip(event)
            data = await node.stream.receive_some(65536)
            node.ws.receive_data(data or None)


def _skip(event: Event) -> None:
    assert isinstance(event, Pong) or not isinstance(event, TextMessage | CloseConnection)


async def signed_in(node: RawNode, user_id: str) -> None:
    """Answer the server's AUTH request as a well-formed node of ``user_id``, and wait until
    the server has taken it (a PING answered)."""
    request = await next_reply(node)
    assert isinstance(request, TextMessage)
    await node.send_text(auth_answer(json.loads(request.data), user_id, DEVICE_ID))
    await node.send_text(PING_MESSAGE)
    await expect_pong(node)


async def expect_pong(node: RawNode) -> None:
    reply = await next_reply(node)
    assert isinstance(reply, TextMessage), reply
    assert json.loads(reply.data)["action"] == "PONG", reply.data


def new_device_id() -> str:
    return str(uuid.uuid4())
