"""RFC 6455 framing for the server side of a node socket: bytes in, messages out, frames to send.

A sans-I/O state machine, like the protocol core: :class:`FrameReader` is fed what the socket
received and hands out one message at a time; the ``*_frame`` functions build what the server
sends (unmasked, unfragmented). No extension is ever negotiated (no permessage-deflate on the
node port), so any RSV bit is an error.

``FrameReader.next()`` returns a ``str`` (a text message, UTF-8 checked), ``bytes`` (a binary
message), a ``(opcode, payload)`` tuple for a control frame (``PING``, ``PONG``, ``CLOSE``: see
:func:`close_payload`), or None when it needs more bytes. It raises the protocol's errors, each
carrying the close code the connection must be failed with:

=============  ====  ===================================================================
FramingError   1002  unmasked client frame, RSV bit, reserved opcode, fragmented or long
                     control frame, continuation out of place, non-minimal or 2^63+ length,
                     malformed close payload
InvalidUtf8    1007  a text message or close reason not UTF-8: checked as the bytes arrive,
                     across fragments and within a frame still arriving (RFC 6455 §8.1)
MessageTooBig  1009  a message over ``max_message_size`` bytes or in more than
                     ``max_fragments`` frames, refused from the frame header (before its
                     payload is buffered)
=============  ====  ===================================================================

Every error fails the connection (RFC 6455 §7.1.7): the reader drops what it holds and reads
nothing more, and the server closes without waiting for the peer's close. After a CLOSE frame
it reads nothing more either (§5.5.1). What it holds is bounded: one partial frame of at most
``max_message_size`` bytes beside the last read, and a fragmented message of at most that many
bytes in at most ``max_fragments`` parts (empty continuation frames count: they would otherwise
grow the message's list of parts without ever reaching the size limit).

The hot path is one small frame per ``feed``: no copy of the buffer, one ``int`` XOR to unmask.
"""

from __future__ import annotations

import codecs
from typing import Final

from grass.websocket.errors import FramingError, InvalidUtf8, MessageTooBig

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: Close codes a peer may send (RFC 6455 §7.4, IANA registry): 1004-1006 and 1015 are reserved,
#: 1016-2999 unassigned; 3000-4999 belong to libraries and applications.
_VALID_CLOSE_CODES: Final = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))

Control = tuple[int, bytes]

#: Frames one message may come in: enough for any client that fragments (browsers and Grass
#: clients send one frame per message), few enough that the list of parts stays small.
DEFAULT_MAX_FRAGMENTS: Final = 128


def valid_close_code(code: int) -> bool:
    return code in _VALID_CLOSE_CODES or 3000 <= code <= 4999


def _unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameReader:
    """The frames a client sends, reassembled into messages (see the module docstring)."""

    __slots__ = (
        "_ahead",
        "_buf",
        "_checked",
        "_decoder",
        "_fragments",
        "_max",
        "_max_fragments",
        "_opcode",
        "_parts",
        "_pos",
        "_size",
        "_state",
        "frames_read",
    )

    _OPEN, _CLOSED, _FAILED = 0, 1, 2

    def __init__(self, max_message_size: int, max_fragments: int = DEFAULT_MAX_FRAGMENTS) -> None:
        self._max = max_message_size
        self._max_fragments = max_fragments
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._state = self._OPEN
        # A fragmented message in progress: its opcode, parts, size, frames and UTF-8 decoder.
        self._opcode: int | None = None
        self._parts: list[bytes] | list[str] | None = None
        self._size = 0
        self._fragments = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        # A text frame still arriving: how much of its payload is checked, and the checker.
        self._ahead: codecs.IncrementalDecoder | None = None
        self._checked = 0
        #: Frames read so far, whole (the transport's turns are counted in frames).
        self.frames_read = 0

    @property
    def failed(self) -> bool:
        """True after an error: the stream is not read any more."""
        return self._state == self._FAILED

    @property
    def done(self) -> bool:
        """True once nothing more will be read: after a CLOSE frame, or an error."""
        return self._state != self._OPEN

    @property
    def buffered(self) -> int:
        """Bytes held: what was fed and not read yet, and the parts of a fragmented message."""
        return len(self._buf) - self._pos + self._size

    def feed(self, data: bytes) -> None:
        if self._state != self._OPEN or not data:
            return
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf, self._pos = data, 0
            return
        # A partial frame waits: grow a bytearray (amortised) rather than re-join bytes.
        if isinstance(buf, bytes):
            buf = bytearray(memoryview(buf)[pos:])
        else:
            del buf[:pos]
        buf += data
        self._buf, self._pos = buf, 0

    def next(self) -> str | bytes | Control | None:
        while self._state == self._OPEN:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise self._fail("reserved bit set, no extension was negotiated")
            if not b1 & 0x80:
                raise self._fail("client frames must be masked")
            opcode, fin, length, head = b0 & 0x0F, b0 & 0x80, b1 & 0x7F, 6
            if not (TEXT <= opcode <= BINARY and self._opcode is None):
                self._check_opcode(opcode, fin, length)  # control, continuation or an error
            if length > 125:
                if avail < (4 if length == 126 else 10):
                    return None
                length, head = self._extended_length(buf, pos, length)
            if opcode < 0x8 and self._size + length > self._max:
                # Refused from the header alone: the payload is never buffered.
                self.stop()
                raise MessageTooBig(f"message larger than {self._max} bytes")
            end = pos + head + length
            if len(buf) < end:
                if opcode == TEXT or (not opcode and self._decoder is not None):
                    self._check_ahead(buf, pos + head, avail - head)
                return None
            if self._ahead is not None:
                self._ahead, self._checked = None, 0
            payload = _unmask(buf[pos + head : end], buf[pos + head - 4 : pos + head])
            self._pos = end
            self.frames_read += 1
            if opcode >= 0x8:
                if opcode == CLOSE:
                    self._state = self._CLOSED
                    self._buf, self._pos = b"", 0
                return (opcode, payload)
            if fin and opcode:  # an unfragmented message: the usual case
                if opcode == BINARY:
                    return payload
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.stop()
                    raise InvalidUtf8("text frame is not valid UTF-8") from None
            message = self._fragment(opcode, payload, fin)
            if message is not None:
                return message
        return None

    def _check_opcode(self, opcode: int, fin: int, length: int) -> None:
        """Refuse a frame its opcode does not allow here: a control frame fragmented or over 125
        bytes, a continuation with no message to continue or past ``max_fragments``, a new
        message inside a fragmented one, a reserved opcode. (The hot path does not call this
        for a text or binary frame that starts a message.)"""
        if opcode >= 0x8:
            if opcode > PONG:
                raise self._fail(f"reserved opcode {opcode:#x}")
            if not fin:
                raise self._fail("fragmented control frame")
            if length > 125:
                raise self._fail("control frame payload over 125 bytes")
        elif opcode == CONTINUATION:
            if self._opcode is None:
                raise self._fail("continuation frame without a message to continue")
            if self._fragments >= self._max_fragments:
                self.stop()
                raise MessageTooBig(f"message in more than {self._max_fragments} frames")
        elif opcode <= BINARY:
            raise self._fail("new message before the fragmented one was finished")
        else:
            raise self._fail(f"reserved opcode {opcode:#x}")

    def _extended_length(self, buf: bytes | bytearray, pos: int, length: int) -> tuple[int, int]:
        """The (payload length, header length) of a frame whose 7-bit length is 126 (16-bit
        length follows) or 127 (64-bit), all of its header being in ``buf``."""
        if length == 126:
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            if length < 126:
                raise self._fail("payload length not minimally encoded")
            return length, 8
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        if length >> 63:
            raise self._fail("payload length over 2^63")
        if length < 65536:
            raise self._fail("payload length not minimally encoded")
        return length, 14

    def _check_ahead(self, buf: bytes | bytearray, start: int, have: int) -> None:
        """Check the UTF-8 of the part of a text frame that arrived so far, so that a bad byte
        fails the connection at once, not after the rest of the frame (up to the size limit)."""
        checked = self._checked
        if have <= checked:
            return
        ahead = self._ahead
        if ahead is None:
            ahead = self._ahead = _utf8_decoder()
            if self._decoder is not None:  # a continuation: from where the message stands
                ahead.setstate(self._decoder.getstate())
        mask = buf[start - 4 : start]
        turn = checked % 4  # the mask key at this offset into the payload
        data = _unmask(buf[start + checked : start + have], mask[turn:] + mask[:turn])
        try:
            ahead.decode(data)
        except UnicodeDecodeError:
            self.stop()
            raise InvalidUtf8("text frame is not valid UTF-8") from None
        self._checked = have

    def _fragment(self, opcode: int, payload: bytes, fin: int) -> str | bytes | None:
        if opcode:  # the first fragment
            self._opcode, self._size, self._fragments = opcode, 0, 0
            self._parts = []
            if opcode == TEXT:
                self._decoder = _utf8_decoder()
        self._size += len(payload)
        self._fragments += 1
        parts = self._parts
        assert parts is not None
        decoder = self._decoder
        if decoder is not None:
            try:
                parts.append(decoder.decode(payload, bool(fin)))  # type: ignore[arg-type]
            except UnicodeDecodeError:
                self.stop()
                raise InvalidUtf8("text message is not valid UTF-8") from None
        else:
            parts.append(payload)  # type: ignore[arg-type]
        if not fin:
            return None
        text = decoder is not None
        self._end_message()
        return "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]

    def _end_message(self) -> None:
        self._opcode = self._parts = self._decoder = None
        self._size = self._fragments = 0

    def stop(self) -> None:
        """Read nothing more, and let go of everything held."""
        self._state = self._FAILED
        self._buf, self._pos = b"", 0
        self._ahead, self._checked = None, 0
        self._end_message()

    def _fail(self, reason: str) -> FramingError:
        self.stop()
        return FramingError(reason)


def _utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")()


def close_payload(payload: bytes) -> tuple[int, str]:
    """The (code, reason) of a received CLOSE frame; 1005 when it carries no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FramingError("close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise FramingError(f"close code {code} may not be sent")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUtf8("close reason is not valid UTF-8") from None


def text_frame(text: str) -> bytes:
    data = text.encode("utf-8")
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + data
    return b"\x81\x7f" + n.to_bytes(8, "big") + data


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    if len(payload) > 125:
        raise ValueError("a control frame carries at most 125 bytes")
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A CLOSE frame; None (or a code that may not be sent) gives one without a code."""
    if code is None or not valid_close_code(code):
        return control_frame(CLOSE)
    data = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return control_frame(CLOSE, code.to_bytes(2, "big") + data)
