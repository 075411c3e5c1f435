"""The opening handshake's HTTP side (RFC 6455 §4.2): the checks of an upgrade request, the
token that accepts it, and the answers (101, or a refusal with a JSON error body)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import h11
import trio

from grass.websocket.transport import AcceptedSocket

#: Cleanup of a closing socket is shielded but bounded by this many seconds.
CLOSE_TIMEOUT: Final = 5.0

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BadUpgrade(Exception):
    def __init__(self, message: str, status: int = 400, headers: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


def check_upgrade(request: h11.Request) -> bytes:
    """The Sec-WebSocket-Key of a valid opening handshake (RFC 6455 §4.2.1), or BadUpgrade."""
    if request.method != b"GET":
        raise BadUpgrade("a WebSocket upgrade is a GET request")
    if request.http_version != b"1.1":
        raise BadUpgrade("a WebSocket upgrade needs HTTP/1.1")
    fields: dict[bytes, list[bytes]] = {}
    for name, value in request.headers:
        fields.setdefault(name, []).append(value)
    connection = b",".join(fields.get(b"connection", ())).lower()
    if b"upgrade" not in (token.strip() for token in connection.split(b",")):
        raise BadUpgrade("missing header 'Connection: Upgrade'")
    if [v.lower() for v in fields.get(b"upgrade", ())] != [b"websocket"]:
        raise BadUpgrade("missing header 'Upgrade: websocket'")
    version = fields.get(b"sec-websocket-version", [])
    if version != [b"13"]:
        headers = [("Sec-WebSocket-Version", "13")]
        raise BadUpgrade("only WebSocket version 13 is spoken", 426 if version else 400, headers)
    key = fields.get(b"sec-websocket-key", [])
    try:
        valid = len(key) == 1 and len(base64.b64decode(key[0], validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise BadUpgrade("missing or invalid header 'Sec-WebSocket-Key'")
    return key[0]


def accept_token(key: bytes) -> bytes:
    # SHA-1 is RFC 6455's choice for this token, not a security measure.
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def response(status: int, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def refuse(
    node: AcceptedSocket[Any],
    status: int,
    body: Mapping[str, Any],
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    """Answer ``status`` with ``body`` as JSON, then hang up (bounded, whatever the client does)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    head = [
        *headers,
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("Connection", "close"),
    ]
    with trio.move_on_after(CLOSE_TIMEOUT) as scope:
        scope.shield = True
        try:
            node.write(response(status, head, data))
            await node.flush()
        finally:
            node.abort()
