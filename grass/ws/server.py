"""The node WebSocket server: answers node upgrades and keeps track of the accepted sockets.

The handler receives each upgrade as a :class:`NodeRequest` before anything is answered, so it
can refuse with an HTTP status and a JSON error body (``reject``) from the request alone, or
``accept`` and run the connection. The server counts accepted sockets so that stopping can be
two steps a graceful shutdown can order: ``stop_accepting`` closes the listener, ``close_all``
closes every node socket with 1001 (going away).
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from grass import logs
from grass.errors import StartupError
from grass.metrics import Metrics

log = logs.get(__name__)

Handler = Callable[["NodeRequest"], Awaitable[None]]

#: Cleanup of a closing socket is shielded but bounded by this many seconds.
CLOSE_TIMEOUT = 5.0


def reason(exc: BaseException) -> str:
    """The operator-facing reason inside a (possibly grouped) start-up OSError."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason(e) for e in exc.exceptions)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class NodeServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 64 * 1024,
        connect_timeout: float = 10.0,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._max_message_size = max_message_size
        self._connect_timeout = connect_timeout
        self._metrics = metrics
        self._listener_scope = trio.CancelScope()
        self._connections: set[WebSocketConnection] = set()
        self.port = 0

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until ``stop_accepting``; connections live on until ``close_all``."""
        async with trio.open_nursery() as connections:
            with self._listener_scope:
                async with trio.open_nursery() as listener:
                    try:
                        server: WebSocketServer = await listener.start(
                            partial(
                                serve_websocket,
                                self._accept,
                                self._host,
                                self._port,
                                self._ssl,
                                handler_nursery=connections,
                                max_message_size=self._max_message_size,
                                connect_timeout=self._connect_timeout,
                                disconnect_timeout=CLOSE_TIMEOUT,
                            )
                        )
                    except (OSError, ExceptionGroup) as exc:
                        raise StartupError(
                            f"cannot listen for nodes on {self._host}:{self._port}: {reason(exc)}"
                        ) from exc
                    self.port = server.port
                    task_status.started(server.port)

    def stop_accepting(self) -> None:
        self._listener_scope.cancel()

    async def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            async with trio.open_nursery() as nursery:
                for conn in list(self._connections):
                    nursery.start_soon(conn.aclose, code, reason)

    async def _accept(self, request: WebSocketRequest) -> None:
        node_request = NodeRequest(request, self)
        try:
            await self._handler(node_request)
        except ConnectionClosed:
            pass
        finally:
            conn = node_request.connection
            if conn is not None:
                self._connections.discard(conn)
                self._metrics.node_connections.dec()
                reason = conn.closed
                self._metrics.node_closes.labels(str(reason.code if reason else "none")).inc()

    def _accepted(self, conn: WebSocketConnection) -> None:
        self._connections.add(conn)
        self._metrics.node_connections.inc()
        self._metrics.node_connections_total.inc()


class NodeRequest:
    """One upgrade request, not answered yet: the handler calls ``accept`` or ``reject`` once."""

    __slots__ = ("_request", "_server", "connection", "rejected")

    def __init__(self, request: WebSocketRequest, server: NodeServer) -> None:
        self._request = request
        self._server = server
        self.connection: WebSocketConnection | None = None
        self.rejected: int | None = None

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        return self._request.headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower().encode("latin-1")
        return next(
            (v.decode("latin-1") for k, v in self._request.headers if k.lower() == wanted), None
        )

    @property
    def path(self) -> str:
        return self._request.path

    @property
    def remote_address(self) -> str:
        remote = self._request.remote
        return remote if isinstance(remote, str) else str(remote.address)

    async def accept(self) -> WebSocketConnection:
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        conn = await self._request.accept()
        self.connection = conn
        self._server._accepted(conn)
        return conn

    async def reject(self, status: int, body: Mapping[str, Any]) -> None:
        """Refuse the upgrade with ``status`` and ``body`` as JSON, then drop the socket."""
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        self.rejected = status
        self._server._metrics.node_closes.labels(str(status)).inc()
        data = json.dumps(body, separators=(",", ":")).encode()
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            try:
                await self._request.reject(
                    status, extra_headers=[(b"Content-Type", b"application/json")], body=data
                )
            finally:
                await _close_stream(self._request)


async def _close_stream(request: WebSocketRequest) -> None:
    # After a rejection trio-websocket keeps reading the socket until the CLIENT closes it, and
    # its aclose() returns early (a close reason is set): a client that never hangs up would
    # hold the socket forever. Its public API has no way to drop it, so reach the stream; the
    # test of a rejected raw client waiting for EOF fails loudly if this path ever changes.
    stream: trio.abc.AsyncResource = request._connection._stream
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.aclose()
