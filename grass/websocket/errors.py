"""The WebSocket layer's errors: a frame or message the codec refuses (each with the close code
RFC 6455 gives it), and a connection that ended. They know nothing of what the messages say."""

from __future__ import annotations

from grass.errors import InvalidInput, ProtocolError

# Layer errors set ``code`` and ``ws_close_code`` themselves: ProtocolError comes first in their
# MRO, so its defaults would otherwise shadow those of the kind (InvalidInput, ...).


class MessageTooBig(ProtocolError, InvalidInput):
    code = "message_too_big"
    ws_close_code = 1009


class InvalidUtf8(ProtocolError, InvalidInput):
    code = "invalid_utf8"
    ws_close_code = 1007


class FramingError(ProtocolError, InvalidInput):
    """A frame that breaks RFC 6455 (unmasked, reserved bits or opcodes, bad lengths...)."""

    code = "websocket_protocol_error"
    ws_close_code = 1002


class TransportClosed(Exception):
    """The peer closed the connection (or it broke); ``code`` is the close code, if any."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code
