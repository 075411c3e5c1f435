"""One node connection: a sans-I/O core that answers inline, and one task for what must wait.

The session speaks to a :class:`NodeTransport` (send text without waiting, receive, ping, close), so
it runs on a node socket in production (:class:`grass.websocket.transport.AcceptedSocket`) and on an
in-memory fake in tests, on virtual time. Close codes it chooses itself (the protocol's own are
in ``docs/protocol.md``):

====  ======================================================================================
1001  the server is going away (the session's task was cancelled: shutdown)
1008  no valid AUTH answer within ``auth_timeout`` (and every refusal at AUTH, see gateway)
4002  heartbeat timeout: no PING for ``heartbeat_timeout`` seconds
4003  the node does not read: more than ``send_queue_size`` messages wait behind the one
      being written
1011  an unexpected error in the session (a bug)
====  ======================================================================================

Two halves. :meth:`NodeSession.deliver` handles one message synchronously: a PING is answered (the
PONG written at once: ``NodeTransport.send`` never waits, what the kernel cannot take yet waits in
the transport's backlog) and its time stored, errors are answered or close the session. It runs
wherever the transport decodes the message; the node socket does that in its poller's task
(``grass.websocket.poller``), so a heartbeat wakes no task and leaves no object behind. The
session's own task (``run``) waits in ``NodeTransport.receive`` for what needs it: the AUTH
answer (checking it awaits storage), the end of the connection, a timer, a close.

Timers: the watchdog (AUTH deadline, then heartbeat deadline) and the round-trip pings are the
server's timers task's (``grass.nodes.timers``; a session run alone starts its own): a PING only
stores its time, the timers call ``tick`` when something may be due, and a timeout fires at
exactly its configured value. Cleanup (the ``on_close`` hook, then the closing handshake) always
runs, shielded and bounded by ``close_timeout``; uptime counts up to the last heartbeat, never
up to the close.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from grass import logs
from grass.domain.uptime import Accrual
from grass.errors import GrassError, ProtocolError, ws_error
from grass.nodes.protocol import (
    Authenticated,
    HttpResponse,
    NodeConnection,
    Ping,
    State,
)
from grass.nodes.timers import Entry, Timers
from grass.websocket.errors import TransportClosed
from grass.websocket.transport import Message

log = logs.get(__name__)

GOING_AWAY = 1001
AUTH_TIMEOUT = 1008
HEARTBEAT_TIMEOUT = 4002
SEND_QUEUE_FULL = 4003
INTERNAL_ERROR = 1011


#: Handles one message (see NodeSession.deliver); what it returns ends a ``NodeTransport.receive``.
Deliver = Callable[[Message], Authenticated | None]


class NodeTransport(Protocol):
    @property
    def backlog(self) -> int:
        """How many messages sent are not fully written yet (the peer does not take them)."""
        ...

    def send(self, text: str) -> None:
        """Write ``text`` now, or queue it behind what the peer has not taken yet."""
        ...

    async def receive(self, deliver: Deliver) -> Authenticated:
        """Hand every message to ``deliver`` (a text or binary message, or a float: the round
        trip in seconds of the last ``ping``) until it returns an event: return that event.
        Raises TransportClosed when the peer closed or the connection broke, and a
        ProtocolError (with its close code) for frames that break RFC 6455."""
        ...

    def ping(self) -> None:
        """Send a protocol ping; its round trip is delivered when the pong arrives."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake (the caller bounds it), then the connection is dropped."""
        ...


Authorize = Callable[["NodeSession", Authenticated], Awaitable[Accrual]]
OnClose = Callable[["NodeSession"], Awaitable[None]]
OnEvent = Callable[["NodeSession", HttpResponse], None]


class NodeSession:
    __slots__ = (
        "_auth_timeout",
        "_authorize",
        "_clock",
        "_close_timeout",
        "_deadline",
        "_heartbeat_timeout",
        "_max_backlog",
        "_next_rtt",
        "_on_close",
        "_on_http_response",
        "_rtt_interval",
        "_scope",
        "_timers",
        "accrual",
        "close_code",
        "close_reason",
        "conn",
        "context",
        "ip",
        "pings",
        "timer",
        "transport",
    )

    def __init__(
        self,
        transport: NodeTransport,
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
        context: object = None,
        timers: Timers | None = None,
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.ip = ip
        #: Whatever the owner needs at ``authorize`` (the gateway: the v5 token's claims).
        self.context = context
        self.accrual: Accrual | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.pings = 0
        self._authorize = authorize
        self._on_close = on_close
        self._on_http_response = on_http_response
        self._clock = clock
        self._auth_timeout = auth_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._rtt_interval = rtt_interval or min(60.0, heartbeat_timeout / 3)
        self._close_timeout = close_timeout
        # The queue: ``send_queue_size`` messages may wait behind the one being written.
        self._max_backlog = send_queue_size + 1
        self._scope: trio.CancelScope | None = None
        #: The server's timers task; None: the session runs its own (tests, lone sessions).
        self._timers = timers
        self._deadline = math.inf  # the watchdog's: AUTH, then heartbeat
        self._next_rtt = math.inf
        self.timer: Entry | None = None  # the timers' (grass.nodes.timers)

    @property
    def device_id(self) -> str | None:
        return self.accrual.device_id if self.accrual else None

    @property
    def user_id(self) -> str | None:
        return self.accrual.user_id if self.accrual else None

    def send(self, text: str) -> bool:
        """Send without waiting; a node with a full queue is closed (4003)."""
        if self.close_code is not None:
            return False
        transport = self.transport
        if transport.backlog >= self._max_backlog:
            self.close(SEND_QUEUE_FULL, "send queue full: the node does not read")
            return False
        transport.send(text)
        return True

    def close(self, code: int, reason: str = "") -> None:
        """End the session with ``code``; the first code given wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.conn.close(code)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        timers = self._timers
        if timers is None:
            await self._run_alone()
            return
        try:
            self.send(self.conn.auth_request())
            await self._serve(timers)
        except trio.Cancelled:
            if self.close_code is None:  # the server is shutting down
                self.close(GOING_AWAY, "server shutting down")
            raise
        except Exception:
            log.exception("node session failed", ip=self.ip)
            self.close(INTERNAL_ERROR, "internal error")
        finally:
            self._scope = None
            timers.drop(self)  # freed when it ends, not at its next due time
            await self._cleanup()

    async def _run_alone(self) -> None:
        self._timers = Timers()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._timers.run)
            await self.run()
            nursery.cancel_scope.cancel()

    def deliver(self, message: Message) -> Authenticated | None:
        """Handle one message now; the AUTH answer is returned, for the task (see module)."""
        if self.close_code is not None:
            return None
        conn = self.conn
        try:
            if type(message) is str:
                event = conn.receive_text(message)
            elif type(message) is float:
                if self.accrual is not None:
                    self.accrual.rtt(message * 1000)
                return None
            else:
                conn.receive_binary(message)  # type: ignore[arg-type]
        except ProtocolError as exc:
            self._answer(exc)
            return None
        if type(event) is Ping:
            self.send(conn.pong())
            self._heartbeat()
        elif type(event) is Authenticated:
            return event
        elif type(event) is HttpResponse and self._on_http_response is not None:
            self._on_http_response(self, event)
        return None

    async def _serve(self, timers: Timers) -> None:
        # One scope and one wait for the connection's whole life: the task wakes for the AUTH
        # answer, a close (timers and other tasks close it through the scope) or the end.
        transport = self.transport
        self._deadline = trio.current_time() + self._auth_timeout
        timers.at(self, self._deadline)
        with trio.CancelScope() as scope:
            self._scope = scope
            while not self._closing():
                try:
                    event = await transport.receive(self.deliver)
                except TransportClosed as exc:
                    self._peer_closed(exc.code)
                    return
                except ProtocolError as exc:  # a frame breaking RFC 6455: 1002, 1007, 1009
                    self._answer(exc)
                    return
                if self._closing():
                    return
                try:
                    self.accrual = await self._authorize(self, event)
                except GrassError as exc:
                    self._answer(exc)
                    return
                now = trio.current_time()
                self._deadline = now + self._heartbeat_timeout
                self._next_rtt = now + self._rtt_interval
                timers.at(self, min(self._deadline, self._next_rtt))
                del event

    def tick(self, now: float) -> float | None:
        """The timers' call (see grass.nodes.timers): close when silent, ping when due."""
        if self.close_code is not None:
            return None
        if now >= self._deadline:
            if self.conn.state is State.AWAITING_AUTH or self.accrual is None:
                self.close(AUTH_TIMEOUT, "no AUTH answer in time")
            else:
                self.close(HEARTBEAT_TIMEOUT, "heartbeat timeout")
            return None
        if now >= self._next_rtt:
            self._next_rtt = now + self._rtt_interval
            self.transport.ping()
        return min(self._deadline, self._next_rtt)

    def _closing(self) -> bool:
        # A method, not the attribute: other tasks close the session while this one awaits.
        return self.close_code is not None

    def _peer_closed(self, code: int | None) -> None:
        if self.close_code is None:
            self.close_code = code or 1006
            self.conn.close(self.close_code)

    def _answer(self, exc: GrassError) -> bool:
        """Close or answer with an error message; True when the session goes on."""
        reply = ws_error(exc)
        if reply.close_code is not None:
            self.close(reply.close_code, reply.reason)
            return False
        return self.send(self.conn.error_message(exc))

    def _heartbeat(self) -> None:
        self.pings += 1
        self._deadline = trio.current_time() + self._heartbeat_timeout
        if self.accrual is not None:
            self.accrual.heartbeat(self._clock())

    async def _cleanup(self) -> None:
        with trio.move_on_after(self._close_timeout) as scope:
            scope.shield = True
            try:
                await self._on_close(self)
            finally:
                await self.transport.close(self.close_code or 1000, self.close_reason)
