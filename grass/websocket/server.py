"""The node WebSocket server: accepts sockets, reads upgrades, hands each one to the handler.

The handler receives each upgrade as a :class:`UpgradeRequest` before anything is answered, so it
can refuse with an HTTP status and a JSON error body (``reject``) from the request alone, or
``accept`` and run the connection over the :class:`~grass.websocket.transport.AcceptedSocket` it
returns.
It answers by the request's ``deadline`` (``connect_timeout`` after the TCP accept), which
bounds what it checks before answering.
The server counts accepted sockets so that stopping can be two steps a graceful shutdown can
order: ``stop_accepting`` closes the listeners, ``close_all`` ends every connection (its session
closes with 1001, going away).

Each TCP connection is one task, from the TLS handshake to the last byte: the upgrade (TLS
included) must arrive within ``connect_timeout`` or the socket is dropped without an answer.
Which accepted sockets are kept at all is decided before a byte is read
(``grass.websocket.admission``: caps per source address, on sockets not upgraded yet, and on the
process's node sockets, from its descriptor limit). When accept() finds no descriptor left
(EMFILE, ENFILE, ENOBUFS, ENOMEM) the loop sheds the oldest sockets not upgraded yet, backs off
briefly and goes on; it logs once per episode, and counts each failure in a metric.
The HTTP request is parsed by h11; the upgrade must be a valid RFC 6455 opening handshake (GET,
HTTP/1.1, ``Connection: upgrade``, ``Upgrade: websocket``, ``Sec-WebSocket-Version: 13``, a
16-byte ``Sec-WebSocket-Key``), otherwise the answer is 400 (426 for another version) with the
JSON error body. Extensions and subprotocols are never negotiated (no permessage-deflate).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import h11
import trio

from grass import logs
from grass.domain.addresses import ClientAddress
from grass.errors import StartupError
from grass.metrics import Metrics
from grass.websocket.admission import SocketAdmission, connection_cap, source_key
from grass.websocket.errors import TransportClosed
from grass.websocket.frames import DEFAULT_MAX_FRAGMENTS
from grass.websocket.handshake import (
    CLOSE_TIMEOUT,
    BadUpgrade,
    accept_token,
    check_upgrade,
    refuse,
    response,
)
from grass.websocket.poller import Poller, open_poller
from grass.websocket.transport import AcceptedSocket

log = logs.get(__name__)

Handler = Callable[["UpgradeRequest"], Awaitable[None]]

#: The largest upgrade request head accepted (h11 answers a longer one as malformed).
MAX_REQUEST_SIZE: Final = 16 * 1024

# What accept() may hit that concerns one client, not the listener (trio's own list).
_IGNORED_ACCEPT_ERRORS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET",
    )
    if hasattr(errno, name)
)  # fmt: skip
_OUT_OF_RESOURCES: Final = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
#: When accept() finds no descriptor: pending sockets shed, and the pause before trying again.
_SHED_WHEN_STARVED: Final = 64
_STARVED_BACKOFF: Final = 0.1


def reason(exc: BaseException) -> str:
    """The operator-facing reason inside a (possibly grouped) start-up OSError."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason(e) for e in exc.exceptions)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class WebSocketServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 64 * 1024,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        connect_timeout: float = 10.0,
        use_poller: bool = True,
        max_pending: int = 2048,
        max_pending_per_address: int = 32,
        max_connections: int = 0,
        descriptor_reserve: int = 1024,
        trusted_proxies: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self._handler = handler
        self._use_poller = use_poller  # False: trio's own waits (what non-Linux systems get)
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._max_message_size = max_message_size
        self._max_fragments = max_fragments
        self._connect_timeout = connect_timeout
        self._metrics = metrics
        #: Peers that are trusted proxies are not counted per address (grass.websocket.admission).
        self._proxies = ClientAddress(trusted_proxies)
        #: Node sockets this process holds at most, upgraded or not.
        self.max_connections = max_connections or connection_cap(descriptor_reserve)
        self._admission = SocketAdmission(
            max_connections=self.max_connections,
            max_pending=max_pending,
            max_pending_per_address=max_pending_per_address,
            metrics=metrics,
        )
        #: Sockets shed in the current episode of accept() failures (None: not in one).
        self._starved: int | None = None
        self._listener_scope = trio.CancelScope()
        self._connections_scope: trio.CancelScope | None = None
        self._accepted: set[AcceptedSocket[Any]] = set()
        self._done = trio.Event()
        self.port = 0

    @property
    def connection_count(self) -> int:
        """Accepted (upgraded) connections still open."""
        return len(self._accepted)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until ``stop_accepting``; connections live on until ``close_all``."""
        try:
            listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        except (OSError, ExceptionGroup) as exc:
            raise StartupError(
                f"cannot listen for nodes on {self._host}:{self._port}: {reason(exc)}"
            ) from exc
        log.info("node sockets capped", max_connections=self.max_connections)
        poller = open_poller() if self._use_poller else None
        try:
            async with trio.open_nursery() as outer:
                if poller is not None:  # outlives the connections: their closes read through it
                    await outer.start(poller.run)
                async with trio.open_nursery() as connections:
                    self._connections_scope = connections.cancel_scope
                    with self._listener_scope:
                        async with trio.open_nursery() as accepting:
                            for listener in listeners:
                                accepting.start_soon(
                                    self._accept, listener.socket, connections, poller
                                )
                            self.port = listeners[0].socket.getsockname()[1]
                            task_status.started(self.port)
                    for listener in listeners:
                        listener.socket.close()
                outer.cancel_scope.cancel()
        finally:
            for listener in listeners:
                listener.socket.close()
            self._done.set()

    def stop_accepting(self) -> None:
        self._listener_scope.cancel()

    async def close_all(self) -> None:
        """Stop accepting and end every connection: each session closes with 1001 (going away),
        bounded by ``CLOSE_TIMEOUT``."""
        self.stop_accepting()
        if self._connections_scope is None:
            return
        self._connections_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT + 1) as scope:
            scope.shield = True
            await self._done.wait()

    async def _accept(
        self, listener: trio.socket.SocketType, connections: trio.Nursery, poller: Poller | None
    ) -> None:
        while True:
            try:
                sock, address = await listener.accept()
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._out_of_descriptors(exc)
                    await trio.sleep(_STARVED_BACKOFF)
                elif exc.errno not in _IGNORED_ACCEPT_ERRORS:
                    raise
                continue
            if self._starved is not None:
                log.warning("accepting node connections again", shed=self._starved)
                self._starved = None
            raw = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            self._admit(raw, address, connections, poller)

    def _admit(
        self, raw: socket.socket, address: Any, connections: trio.Nursery, poller: Poller | None
    ) -> None:
        """Keep an accepted socket (its task started), or drop it at once (see admission.py).
        Not inlined in the accept loop: its locals would hold the last connection."""
        host = address[0] if isinstance(address, tuple) else ""
        key = None if self._proxies.trusted(host) else source_key(host)
        node: AcceptedSocket[Any] = AcceptedSocket(raw, connections, self._ssl, poller)
        if not self._admission.admit(node, key):
            node.abort()
            return
        if raw.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # a client already gone is found out later
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.start_soon(self._connection, node, address)

    def _out_of_descriptors(self, exc: OSError) -> None:
        """accept() found no descriptor (or buffer): free some, by shedding the oldest
        sockets not upgraded yet; one log line per episode, a metric per failure."""
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self._metrics.node_accept_errors.labels(name).inc()
        shed = self._admission.shed_oldest(_SHED_WHEN_STARVED, "descriptors")
        if self._starved is None:
            log.error(
                "cannot accept node connections: shedding the oldest not upgraded yet",
                error=f"{name}: {os.strerror(exc.errno or 0)}",
                shed=shed,
                open=self._admission.open,
            )
            self._starved = 0
        self._starved += shed

    async def _connection(self, node: AcceptedSocket[Any], address: Any) -> None:
        request: UpgradeRequest | None = None
        deadline = trio.current_time() + self._connect_timeout
        try:
            with trio.move_on_at(deadline):
                try:
                    request = await self._read_upgrade(node, address, deadline)
                except BadUpgrade as exc:
                    body = {"error": {"code": "bad_upgrade", "message": str(exc), "details": {}}}
                    await refuse(node, exc.status, body, exc.headers)
                    return
            if request is None:
                return  # connect_timeout (or shed): dropped without an answer
            await self._handler(request)
        except TransportClosed:
            pass
        except Exception:
            log.exception("node connection failed", remote=str(address))
        finally:
            node.abort()
            upgraded = request is not None and request.connection is not None
            self._admission.closed(node, upgraded=upgraded)
            if upgraded:
                self._accepted.discard(node)
                self._metrics.node_connections.dec()
                self._metrics.node_closes.labels(str(node.close_code or "none")).inc()

    async def _read_upgrade(
        self, node: AcceptedSocket[Any], address: Any, deadline: float
    ) -> UpgradeRequest:
        await node.start_tls()
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_SIZE)
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadUpgrade(f"malformed HTTP request: {exc}") from None
            if event is h11.NEED_DATA:
                data = await node.receive_bytes()
                if not data:
                    raise TransportClosed(None)
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                break
            raise TransportClosed(None)  # ConnectionClosed, or anything but a request
        key = check_upgrade(event)
        remote = address[0] if isinstance(address, tuple) else str(address)
        return UpgradeRequest(
            self,
            node,
            key,
            parser.trailing_data[0],
            list(event.headers),
            event.target.decode("latin-1"),
            str(remote),
            deadline,
        )

    def _accepted_connection(self, node: AcceptedSocket[Any]) -> None:
        self._accepted.add(node)
        self._metrics.node_connections.inc()
        self._metrics.node_connections_total.inc()


class UpgradeRequest:
    """One upgrade request, not answered yet: the handler calls ``accept`` or ``reject`` once."""

    __slots__ = (
        "_key",
        "_received",
        "_server",
        "_socket",
        "connection",
        "deadline",
        "headers",
        "path",
        "rejected",
        "remote_address",
    )

    def __init__(
        self,
        server: WebSocketServer,
        node: AcceptedSocket[Any],
        key: bytes,
        received: bytes,
        headers: list[tuple[bytes, bytes]],
        path: str,
        remote_address: str,
        deadline: float,
    ) -> None:
        self._server = server
        self._socket = node
        self._key = key
        self._received = received
        #: The request's headers, names lower-case (released once accepted).
        self.headers: Sequence[tuple[bytes, bytes]] = headers
        self.path = path
        self.remote_address = remote_address
        #: When the handler must have answered (trio time): the end of connect_timeout.
        self.deadline = deadline
        self.connection: AcceptedSocket[Any] | None = None
        self.rejected: int | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower().encode("latin-1")
        return next((v.decode("latin-1") for k, v in self.headers if k == wanted), None)

    async def accept(self) -> AcceptedSocket[Any]:
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        node = self._socket
        server = self._server
        if not server._admission.upgraded(node):
            raise TransportClosed(None)  # shed while the handler decided
        token = accept_token(self._key).decode()
        node.write(
            response(
                101,
                [
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", token),
                ],
            )
        )
        node.open(server._max_message_size, self._received, server._max_fragments)
        self.connection = node
        self.headers, self._received = (), b""  # nothing of the request outlives the upgrade
        server._accepted_connection(node)
        await trio.lowlevel.checkpoint()
        return node

    async def reject(self, status: int, body: Mapping[str, Any]) -> None:
        """Refuse the upgrade with ``status`` and ``body`` as JSON, then drop the socket."""
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        self.rejected = status
        self._server._metrics.node_closes.labels(str(status)).inc()
        await refuse(self._socket, status, body)
