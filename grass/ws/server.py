"""The node WebSocket server: accepts sockets, reads upgrades, hands each one to the handler.

The handler receives each upgrade as a :class:`NodeRequest` before anything is answered, so it
can refuse with an HTTP status and a JSON error body (``reject``) from the request alone, or
``accept`` and run the connection over the :class:`~grass.ws.transport.NodeSocket` it returns.
It answers by the request's ``deadline`` (``connect_timeout`` after the TCP accept), which
bounds what it checks before answering.
The server counts accepted sockets so that stopping can be two steps a graceful shutdown can
order: ``stop_accepting`` closes the listeners, ``close_all`` ends every connection (its session
closes with 1001, going away).

Each TCP connection is one task, from the TLS handshake to the last byte: the upgrade (TLS
included) must arrive within ``connect_timeout`` or the socket is dropped without an answer.
The HTTP request is parsed by h11; the upgrade must be a valid RFC 6455 opening handshake (GET,
HTTP/1.1, ``Connection: upgrade``, ``Upgrade: websocket``, ``Sec-WebSocket-Version: 13``, a
16-byte ``Sec-WebSocket-Key``), otherwise the answer is 400 (426 for another version) with the
JSON error body. Extensions and subprotocols are never negotiated (no permessage-deflate).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import http
import json
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import h11
import trio

from grass import logs
from grass.errors import StartupError
from grass.metrics import Metrics
from grass.ws.poller import Poller, open_poller
from grass.ws.session import TransportClosed
from grass.ws.transport import NodeSocket

log = logs.get(__name__)

Handler = Callable[["NodeRequest"], Awaitable[None]]

#: Cleanup of a closing socket is shielded but bounded by this many seconds.
CLOSE_TIMEOUT: Final = 5.0
#: The largest upgrade request head accepted (h11 answers a longer one as malformed).
MAX_REQUEST_SIZE: Final = 16 * 1024

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
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


def reason(exc: BaseException) -> str:
    """The operator-facing reason inside a (possibly grouped) start-up OSError."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason(e) for e in exc.exceptions)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class BadUpgrade(Exception):
    def __init__(self, message: str, status: int = 400, headers: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


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
        use_poller: bool = True,
    ) -> None:
        self._handler = handler
        self._use_poller = use_poller  # False: trio's own waits (what non-Linux systems get)
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._max_message_size = max_message_size
        self._connect_timeout = connect_timeout
        self._metrics = metrics
        self._listener_scope = trio.CancelScope()
        self._connections_scope: trio.CancelScope | None = None
        self._accepted: set[NodeSocket] = set()
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
                    log.error("cannot accept node connections", error=reason(exc))
                    await trio.sleep(0.1)
                elif exc.errno not in _IGNORED_ACCEPT_ERRORS:
                    raise
                continue
            raw = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            if raw.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):  # a client already gone is found out later
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.start_soon(
                self._connection, NodeSocket(raw, connections, self._ssl, poller), address
            )

    async def _connection(self, node: NodeSocket, address: Any) -> None:
        request: NodeRequest | None = None
        deadline = trio.current_time() + self._connect_timeout
        try:
            with trio.move_on_at(deadline):
                try:
                    request = await self._read_upgrade(node, address, deadline)
                except BadUpgrade as exc:
                    body = {"error": {"code": "bad_upgrade", "message": str(exc), "details": {}}}
                    await _refuse(node, exc.status, body, exc.headers)
                    return
            if request is None:
                return  # connect_timeout: dropped without an answer
            await self._handler(request)
        except TransportClosed:
            pass
        except Exception:
            log.exception("node connection failed", remote=str(address))
        finally:
            node.abort()
            if request is not None and request.connection is not None:
                self._accepted.discard(node)
                self._metrics.node_connections.dec()
                self._metrics.node_closes.labels(str(node.close_code or "none")).inc()

    async def _read_upgrade(self, node: NodeSocket, address: Any, deadline: float) -> NodeRequest:
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
        key = _check_upgrade(event)
        remote = address[0] if isinstance(address, tuple) else str(address)
        return NodeRequest(
            self,
            node,
            key,
            parser.trailing_data[0],
            list(event.headers),
            event.target.decode("latin-1"),
            str(remote),
            deadline,
        )

    def _accepted_connection(self, node: NodeSocket) -> None:
        self._accepted.add(node)
        self._metrics.node_connections.inc()
        self._metrics.node_connections_total.inc()


def _check_upgrade(request: h11.Request) -> bytes:
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


def _accept_token(key: bytes) -> bytes:
    # SHA-1 is RFC 6455's choice for this token, not a security measure.
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _response(status: int, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _refuse(
    node: NodeSocket,
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
            node.write(_response(status, head, data))
            await node.flush()
        finally:
            node.abort()


class NodeRequest:
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
        server: NodeServer,
        node: NodeSocket,
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
        self.connection: NodeSocket | None = None
        self.rejected: int | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower().encode("latin-1")
        return next((v.decode("latin-1") for k, v in self.headers if k == wanted), None)

    async def accept(self) -> NodeSocket:
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        node = self._socket
        token = _accept_token(self._key).decode()
        node.write(
            _response(
                101,
                [
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", token),
                ],
            )
        )
        node.open(self._server._max_message_size, self._received)
        self.connection = node
        self.headers, self._received = (), b""  # nothing of the request outlives the upgrade
        self._server._accepted_connection(node)
        await trio.lowlevel.checkpoint()
        return node

    async def reject(self, status: int, body: Mapping[str, Any]) -> None:
        """Refuse the upgrade with ``status`` and ``body`` as JSON, then drop the socket."""
        if self.connection is not None or self.rejected is not None:
            raise RuntimeError("this upgrade request is already answered")
        self.rejected = status
        self._server._metrics.node_closes.labels(str(status)).inc()
        await _refuse(self._socket, status, body)
