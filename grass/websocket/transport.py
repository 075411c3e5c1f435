"""One accepted connection's RFC 6455 frames over a :class:`~grass.websocket.wire.Wire`.

What the session sends is framed and written at once (``Wire.write`` never waits; the session
closes a node whose backlog outgrows its queue). A protocol ping from the node is answered at
once too (or, while the backlog is not empty, once it is: only the latest one, as RFC 6455
§5.5.3 allows).

Receiving, with a poller (``grass.websocket.poller``, Linux): the socket is in the poller's
edge-triggered set from the upgrade on, and what arrives is read, decoded and handed to the
session's ``deliver`` right in the poller's task (``_pump``): a PING is answered, and its
connection's task never wakes. That task sleeps in ``receive`` until a delivery returns an event
(the AUTH answer), the connection ends or breaks, or it is cancelled (a close); it then reads
itself. Without a poller, ``receive`` reads in the connection's task
(``trio.lowlevel.wait_readable``).

Fairness: a turn handles at most ``_TURN_FRAMES`` frames (control frames and the fragments of a
message count, not only the messages delivered) and reads at most ``_TURN_BYTES`` bytes, then
lets the others run; a message is at most ``max_fragments`` frames, so no turn is longer. A node
may send a burst of ``CONTROL_FRAMES_BURST`` control frames, then ``CONTROL_FRAMES_PER_SECOND``:
past that it is a flood, which fails the connection with 1008 (:class:`ControlFrameFlood`).

Closing: the server's close frame, then the node's answer is awaited (the caller bounds the
wait); a close from the node is answered at once. After a frame that fails the connection (an
error from the frame reader, a malformed close, a control frame flood) no frame is read, so no
close is awaited either (RFC 6455 §7.1.7): the close frame is written, our half of the stream
ends, and what the node still sends is dropped for at most ``LINGER_SECONDS`` and
``LINGER_BYTES`` before the server hangs up (a lingering close: a node still writing then reads
our close frame instead of a reset).
In every case the server closes the TCP connection itself at the end (§7.1.1).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import trio

from grass.errors import InvalidInput, ProtocolError
from grass.websocket.errors import TransportClosed
from grass.websocket.frames import (
    CLOSE,
    DEFAULT_MAX_FRAGMENTS,
    PING,
    PONG,
    Control,
    FrameReader,
    close_frame,
    close_payload,
    control_frame,
    text_frame,
)
from grass.websocket.poller import Poller
from grass.websocket.wire import Wire

#: Frames handled, and bytes read, in one turn before others get theirs.
_TURN_FRAMES: Final = 16
_TURN_BYTES: Final = 65536
#: Control frames (PING, PONG) a node may send: a burst, then this many per second.
CONTROL_FRAMES_PER_SECOND: Final = 10
CONTROL_FRAMES_BURST: Final = 50

T = TypeVar("T")
#: A message as the connection hands it on: text, binary, or a PONG's round-trip time (s).
Message = str | bytes | float
#: Handles one message; whatever it returns but None ends a ``receive`` (the session's: the
#: AUTH answer).
Deliver = Callable[[Message], T | None]

# States, in order: a state never goes back.
_HANDSHAKE, _OPEN, _CLOSE_SENT, _CLOSE_RECEIVED, _DONE = range(5)


def _ignore(message: Message) -> None:
    """What the closing handshake does with the messages still arriving."""


class ControlFrameFlood(ProtocolError, InvalidInput):
    """More PINGs and PONGs than ``CONTROL_FRAMES_PER_SECOND`` (past a burst)."""

    code = "control_frame_flood"
    ws_close_code = 1008


class AcceptedSocket(Wire, Generic[T]):
    """One accepted connection: the server's ``nursery`` runs its writer when a backlog builds
    up; ``poller``, if given, watches it from the upgrade on."""

    __slots__ = (
        "_abort_fn",
        "_controls_at",
        "_deliver",
        "_frames",
        "_ping",
        "_ping_at",
        "_poller",
        "_pong_due",
        "_result",
        "_state",
        "_turn_end",
        "_waiter",
        "close_code",
    )

    def __init__(
        self,
        sock: socket.socket,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext | None = None,
        poller: Poller | None = None,
    ) -> None:
        super().__init__(sock, nursery, ssl_context)
        self._poller = poller
        self._state = _HANDSHAKE
        self._frames: FrameReader | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._abort_fn: Callable[[Any], trio.lowlevel.Abort] | None = None
        self._deliver: Deliver[T] | None = None  # set while the session's task sleeps in receive
        self._result: T | BaseException | None = None
        self._turn_end = _TURN_FRAMES  # frames_read at which own reads let others run
        self._controls_at = 0.0  # when the control frames received so far are paid for
        self._ping: bytes | None = None
        self._ping_at = 0.0
        self._pong_due: bytes | None = None
        #: The close code sent or received (1006: the connection ended without one).
        self.close_code: int | None = None

    def open(
        self,
        max_message_size: int,
        received: bytes = b"",
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    ) -> None:
        """The upgrade is answered: frames from here on (``received`` came with the request)."""
        self._frames = FrameReader(max_message_size, max_fragments)
        self._frames.feed(received)
        self._state = _OPEN
        if self._poller is not None:
            # Bound once: a wait allocates nothing of ours (the cycle ends in abort()).
            self._abort_fn = self._aborted
            self._readable = True
            self._poller.add(self)

    # -- the session's transport -------------------------------------------------------------

    def send(self, text: str) -> None:
        if self._state == _OPEN:
            self.write(text_frame(text))

    def ping(self) -> None:
        if self._state != _OPEN:
            return
        self._ping = os.urandom(4)
        self._ping_at = trio.current_time()
        self.write(control_frame(PING, self._ping))

    async def receive(self, deliver: Deliver[T]) -> T:
        frames = self._frames
        assert frames is not None
        if self._abort_fn is not None:  # the poller's task delivers; this one sleeps
            self._deliver = deliver
            try:
                while self._pump():  # what is buffered or arrived already
                    await trio.lowlevel.checkpoint()  # others' turn (the poller may deliver)
                if self._deliver is not None:
                    self._waiter = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._abort_fn)
            finally:
                self._waiter = self._deliver = None
            result, self._result = self._result, None
            if isinstance(result, BaseException):
                try:
                    raise result
                finally:
                    del result  # the traceback holds this frame: a local naming it is a cycle
            assert result is not None
            return result
        while True:  # no poller: this task reads, one read per wait (a turn's bytes)
            if frames.frames_read >= self._turn_end:  # many frames from one read: others' turn
                await trio.lowlevel.checkpoint()  # before taking one: a cancel loses nothing
                self._turn_end = frames.frames_read + _TURN_FRAMES
            message = frames.next()
            if message is None:
                if self._state >= _CLOSE_RECEIVED:
                    raise TransportClosed(self.close_code)
                try:
                    await trio.lowlevel.wait_readable(self._sock)
                except trio.ClosedResourceError:
                    data: bytes | None = b""
                else:
                    data = self.read()
                self._turn_end = frames.frames_read + _TURN_FRAMES
                if data is None:
                    continue
                if not data:
                    self._gone()
                    raise TransportClosed(None)
                frames.feed(data)
                continue
            event = self._take(message, deliver)
            if event is not None:
                return event

    async def close(self, code: int, reason: str = "") -> None:
        try:
            if self._state == _OPEN:
                self.write(close_frame(code, reason))
                self.close_code = code
                self._state = _CLOSE_SENT
            await self.flush()
            if self._state == _CLOSE_SENT and not self._broken:
                await self._await_close()
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now (idempotent)."""
        if self._state == _DONE:
            return
        if self.close_code is None:
            self.close_code = 1006
        self._state = _DONE
        self._frames = None
        if self._poller is not None:
            self._poller.discard(self)
        self._abort_fn = None
        if self._waiter is not None:  # never left sleeping on a closed socket
            self._finish(TransportClosed(None))
        self.close_socket()

    # -- the poller's side (grass.websocket.poller) ------------------------------------------

    def ready(self) -> None:
        self._readable = True
        if self._deliver is not None and self._pump():
            assert self._poller is not None
            self._poller.again(self)  # the rest once the others had their turn

    def _aborted(self, _: Any) -> trio.lowlevel.Abort:
        self._waiter = self._deliver = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _pump(self) -> bool:
        """Read, decode and deliver what arrived, until a delivery returns an event, the
        connection ends, the session closes, or this turn's budget of frames or bytes is spent
        (True: more may be waiting, call again after a checkpoint)."""
        frames, deliver = self._frames, self._deliver
        if frames is None or deliver is None:
            return False
        turn_end, received = frames.frames_read + _TURN_FRAMES, 0
        try:
            while True:
                message = frames.next()
                if message is None:
                    if not self._readable:
                        return False  # until the next edge
                    if received >= _TURN_BYTES or frames.frames_read >= turn_end:
                        return True  # frames that make no message count too
                    data = self.read()
                    if data is None:
                        continue
                    if not data:
                        self._gone()
                        raise TransportClosed(None)
                    received += len(data)
                    frames.feed(data)
                    continue
                event = self._take(message, deliver)
                if self._deliver is None:
                    return False  # the session closed: its task is woken (cancelled)
                if event is not None:
                    self._finish(event)
                    return False
                if frames.frames_read >= turn_end:
                    return True
        except (TransportClosed, ProtocolError) as exc:
            self._finish(exc.with_traceback(None))
        except Exception as exc:  # a bug in delivering: the session's task reports it (1011)
            self._finish(exc)
        return False

    def _finish(self, result: T | BaseException) -> None:
        self._result = result
        self._deliver = None
        task, self._waiter = self._waiter, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    # -- frames ------------------------------------------------------------------------------

    def _take(self, message: str | bytes | Control, deliver: Deliver[T]) -> T | None:
        """One decoded message: control frames are answered here, the rest delivered."""
        if type(message) is str or type(message) is bytes:
            return deliver(message)
        assert type(message) is tuple
        opcode, payload = message
        if opcode != CLOSE:
            self._count_control()
        if opcode == PING:
            if self._out:
                self._pong_due = payload
            else:
                self.write(control_frame(PONG, payload))
        elif opcode == PONG:
            if payload == self._ping:
                self._ping = None
                return deliver(trio.current_time() - self._ping_at)
        else:
            assert opcode == CLOSE
            # A malformed close is a ProtocolError: the session closes with its code.
            code, _ = close_payload(payload)
            if self._state == _OPEN:
                # Echo the code (RFC 6455 §5.5.1); 1005 means there was none.
                self.write(close_frame(None if code == 1005 else code))
                self.close_code = code
            self._state = _CLOSE_RECEIVED
            raise TransportClosed(code)
        return None

    def _count_control(self) -> None:
        """A PING or PONG: within the node's allowance, or ControlFrameFlood (a token bucket
        kept as the time at which what was received is paid for)."""
        now = trio.current_time()
        paid_at = max(self._controls_at, now) + 1 / CONTROL_FRAMES_PER_SECOND
        if paid_at - now > CONTROL_FRAMES_BURST / CONTROL_FRAMES_PER_SECOND:
            assert self._frames is not None
            self._frames.stop()  # failed: nothing more is read (nor awaited at the close)
            raise ControlFrameFlood(
                f"more than {CONTROL_FRAMES_PER_SECOND} control frames per second"
            )
        self._controls_at = paid_at

    def _backlog_written(self) -> None:
        if self._pong_due is not None and self._state == _OPEN:
            payload, self._pong_due = self._pong_due, None
            self.write(control_frame(PONG, payload))

    async def _await_close(self) -> None:
        while self._state == _CLOSE_SENT:
            frames = self._frames
            if frames is None or frames.done:
                # Failed, or the node's close is read already (a malformed one): no frame
                # will be read, so no close is awaited (RFC 6455 §7.1.7). Our half ends after
                # the close frame at once, and what the node still sends is dropped for a
                # bounded while, so that hanging up does not reset the stream before it read
                # our close frame.
                await self._linger()
                return
            try:
                await self.receive(_ignore)
            except TransportClosed:
                return
            except ProtocolError:  # a bad frame while awaiting the close fails it too
                await self._linger()
                return

    async def _linger(self) -> None:
        if self._poller is not None:
            self._poller.discard(self)
        if not self._broken:
            await self.linger()
