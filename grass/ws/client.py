"""Opening a node socket as a client (the reference node, tests, benchmarks).

trio-websocket's client never closes its TCP stream when the *server* ends the connection
first: ``aclose`` returns early because a close reason is already set, and the reader stops at
EOF without closing the stream. The socket then leaks until garbage collection (a
ResourceWarning). ``open_node_socket`` closes it on the way out.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from trio_websocket import WebSocketConnection, open_websocket_url


@asynccontextmanager
async def open_node_socket(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    max_message_size: int = 1024 * 1024,
) -> AsyncIterator[WebSocketConnection]:
    connection = None
    try:
        async with open_websocket_url(
            url,
            ssl_context=ssl_context,
            extra_headers=extra_headers,
            message_queue_size=4,
            max_message_size=max_message_size,
        ) as ws:
            connection = ws
            yield ws
    finally:
        if connection is not None:
            stream: trio.abc.Stream = connection._stream  # see the module docstring
            with trio.CancelScope(shield=True):
                await stream.aclose()


def insecure_client_context() -> ssl.SSLContext:
    """What Grass clients do: TLS without checking the certificate (self-signed on a laptop)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
