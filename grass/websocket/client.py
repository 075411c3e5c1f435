"""Opening a node socket as a client (the reference node, tests, benchmarks).

The TCP (or TLS) stream is opened and closed here, not by trio-websocket: its client leaves the
stream open when the *server* ends the connection first (``aclose`` returns early because a
close reason is already set, and the reader stops at EOF without closing the stream), and when
the server rejects the upgrade. Either way the socket would leak until garbage collection.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from grass.errors import sole_exception


@asynccontextmanager
async def open_node_socket(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    max_message_size: int = 1024 * 1024,
) -> AsyncIterator[WebSocketConnection]:
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    stream = await trio.open_tcp_stream(host, port)
    try:
        if secure:
            stream = trio.SSLStream(
                stream, ssl_context or ssl.create_default_context(), server_hostname=host
            )
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    host,
                    resource,
                    extra_headers=extra_headers,
                    message_queue_size=4,
                    max_message_size=max_message_size,
                )
                try:
                    yield ws
                finally:
                    await ws.aclose()
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def insecure_client_context() -> ssl.SSLContext:
    """What Grass clients do: TLS without checking the certificate (self-signed on a laptop)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
