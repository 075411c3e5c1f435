"""One node connection: a nursery with a reader, a watchdog, a writer and a round-trip pinger.

The session speaks to a :class:`Transport` (send text, receive a message, ping, close), so it
runs on trio-websocket in production (:class:`WebSocketTransport`) and on an in-memory fake in
tests, on virtual time. Close codes it chooses itself (the protocol's own are in
``docs/protocol.md``):

====  ======================================================================================
1008  no valid AUTH answer within ``auth_timeout`` (and every refusal at AUTH, see gateway)
4002  heartbeat timeout: no PING for ``heartbeat_timeout`` seconds
4003  the node does not read: its send queue (``send_queue_size`` messages) is full
1011  an unexpected error in the session (a bug)
====  ======================================================================================

The watchdog is one cancel scope whose deadline each PING pushes back: no task hop and no
allocation per heartbeat. Before AUTH the same deadline is the AUTH deadline. Cleanup (the
``on_close`` hook, then closing the socket) always runs, shielded and bounded by
``close_timeout``; uptime counts up to the last heartbeat, never up to the close.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from grass import logs
from grass.errors import GrassError, ProtocolError, ws_error
from grass.ws.protocol import (
    Authenticated,
    HttpResponse,
    NodeConnection,
    Ping,
    State,
)
from grass.ws.uptime import Accrual

log = logs.get(__name__)

AUTH_TIMEOUT = 1008
HEARTBEAT_TIMEOUT = 4002
SEND_QUEUE_FULL = 4003
INTERNAL_ERROR = 1011


class TransportClosed(Exception):
    """The peer closed the connection (or it broke); ``code`` is the close code, if any."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code


class Transport(Protocol):
    async def send(self, text: str) -> None: ...
    async def receive(self) -> str | bytes: ...
    async def ping(self) -> None:
        """Send a protocol ping and return when its pong arrives."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class WebSocketTransport:
    """The trio-websocket adapter. The library itself closes with 1009 (oversized) and 1007
    (invalid UTF-8) and answers protocol pings; the session only sees the connection end."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_message(text)
        except ConnectionClosed as exc:
            raise TransportClosed(_code(exc)) from None

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except ConnectionClosed as exc:
            raise TransportClosed(_code(exc)) from None

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except ConnectionClosed as exc:
            raise TransportClosed(_code(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        await self._ws.aclose(code, reason)


def _code(exc: ConnectionClosed) -> int | None:
    return exc.reason.code if exc.reason is not None else None


Authorize = Callable[["Session", Authenticated], Awaitable[Accrual]]
OnClose = Callable[["Session"], Awaitable[None]]
OnEvent = Callable[["Session", HttpResponse], None]


class Session:
    def __init__(
        self,
        transport: Transport,
        conn: NodeConnection,
        *,
        ip: str,
        authorize: Authorize,
        on_close: OnClose,
        clock: Callable[[], float],
        auth_timeout: float,
        heartbeat_timeout: float,
        send_queue_size: int,
        rtt_interval: float | None = None,
        close_timeout: float = 5.0,
        on_http_response: OnEvent | None = None,
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.ip = ip
        self.accrual: Accrual | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._authorize = authorize
        self._on_close = on_close
        self._on_http_response = on_http_response
        self._clock = clock
        self._auth_timeout = auth_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._rtt_interval = rtt_interval or min(60.0, heartbeat_timeout / 3)
        self._close_timeout = close_timeout
        self._queue_in, self._queue_out = trio.open_memory_channel[str](send_queue_size)
        self._scope = trio.CancelScope()
        self._watchdog = trio.CancelScope()
        self.pings = 0

    @property
    def device_id(self) -> str | None:
        return self.accrual.device_id if self.accrual else None

    @property
    def user_id(self) -> str | None:
        return self.accrual.user_id if self.accrual else None

    def send(self, text: str) -> bool:
        """Queue a message without waiting; a full queue closes the session (4003)."""
        if self.close_code is not None:
            return False
        try:
            self._queue_in.send_nowait(text)
        except trio.WouldBlock:
            self.close(SEND_QUEUE_FULL, "send queue full: the node does not read")
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        """End the session with ``code``; the first code given wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.conn.close(code)
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._watch)
                    self.send(self.conn.auth_request())
                    await self._reader(nursery)
        except Exception:
            log.exception("node session failed", ip=self.ip)
            self.close(INTERNAL_ERROR, "internal error")
        finally:
            await self._cleanup()

    def _peer_closed(self, code: int | None) -> None:
        if self.close_code is None:
            self.close_code = code or 1006
            self.conn.close(self.close_code)
        self._scope.cancel()

    async def _cleanup(self) -> None:
        with trio.move_on_after(self._close_timeout) as scope:
            scope.shield = True
            try:
                await self._on_close(self)
            finally:
                self._queue_in.close()
                await self.transport.close(self.close_code or 1000, self.close_reason)

    async def _reader(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        receive = self.transport.receive
        while True:
            try:
                message = await receive()
            except TransportClosed as exc:
                self._peer_closed(exc.code)
                return
            try:
                if isinstance(message, str):
                    event = conn.receive_text(message)
                else:
                    conn.receive_binary(message)
            except ProtocolError as exc:
                if not self._answer(exc):
                    return
                continue
            if type(event) is Ping:
                self.send(conn.pong())
                self._heartbeat()
            elif type(event) is Authenticated:
                try:
                    self.accrual = await self._authorize(self, event)
                except GrassError as exc:
                    self._answer(exc)
                    return
                self._watchdog.deadline = trio.current_time() + self._heartbeat_timeout
                nursery.start_soon(self._measure_rtt)
            elif type(event) is HttpResponse and self._on_http_response is not None:
                self._on_http_response(self, event)

    def _answer(self, exc: GrassError) -> bool:
        """Close or answer with an error message; True when the session goes on."""
        reply = ws_error(exc)
        if reply.close_code is not None:
            self.close(reply.close_code, reply.reason)
            return False
        return self.send(self.conn.error_message(exc))

    def _heartbeat(self) -> None:
        self.pings += 1
        self._watchdog.deadline = trio.current_time() + self._heartbeat_timeout
        if self.accrual is not None:
            self.accrual.heartbeat(self._clock())

    async def _watch(self) -> None:
        self._watchdog.deadline = trio.current_time() + self._auth_timeout
        with self._watchdog:
            await trio.sleep_forever()
        if self.conn.state is State.AWAITING_AUTH or self.accrual is None:
            self.close(AUTH_TIMEOUT, "no AUTH answer in time")
        else:
            self.close(HEARTBEAT_TIMEOUT, "heartbeat timeout")

    async def _writer(self) -> None:
        async with self._queue_out:
            try:
                async for text in self._queue_out:
                    await self.transport.send(text)
            except TransportClosed as exc:
                self._peer_closed(exc.code)

    async def _measure_rtt(self) -> None:
        while True:
            await trio.sleep(self._rtt_interval)
            started = trio.current_time()
            with trio.move_on_after(self._rtt_interval):
                try:
                    await self.transport.ping()
                except TransportClosed as exc:
                    self._peer_closed(exc.code)
                    return
                if self.accrual is not None:
                    self.accrual.rtt((trio.current_time() - started) * 1000)
