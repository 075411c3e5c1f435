"""The node WebSocket server: accepts node sockets and keeps track of them.

Stopping is two steps so a graceful shutdown can order them: ``stop_accepting`` closes the
listener, ``close_all`` closes every node socket with 1001 (going away).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from functools import partial

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

Handler = Callable[[WebSocketConnection], Awaitable[None]]

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
        conn = await request.accept()
        self._connections.add(conn)
        self._metrics.node_connections.inc()
        self._metrics.node_connections_total.inc()
        try:
            await self._handler(conn)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(conn)
            self._metrics.node_connections.dec()
            reason = conn.closed
            self._metrics.node_closes.labels(str(reason.code if reason else "none")).inc()
