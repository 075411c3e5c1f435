"""Bytes over one accepted socket: TLS through memory BIOs, and writes that never wait.

:class:`Wire` owns a non-blocking standard-library socket. TLS, when configured, runs through
an ``ssl.SSLObject`` over memory BIOs, so encrypting and decrypting are function calls. ``write``
hands bytes to the kernel at once, from whichever task calls; only what the kernel cannot take
yet waits, in a backlog that one writer task (started on demand in the server's nursery, gone
once the backlog is empty) drains with ``sendmsg``. The node socket (``grass.websocket.transport``)
builds the WebSocket connection on top.

Why not ``trio.SocketStream``/``SSLStream``: their ``send_all`` must be awaited by one task at a
time, which is what forced a writer task, a queue and a lock on every connection before.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import socket
import ssl
from typing import Final

import trio

from grass.websocket.errors import TransportClosed

RECEIVE_SIZE: Final = 65536
_IOV_MAX: Final = 64  # buffers per sendmsg call when draining a backlog
#: How long, and how many bytes, a failed connection's peer may still send (and see dropped)
#: after our last frame, so that hanging up does not reset the stream before it read that frame.
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 256 * 1024


class Wire:
    __slots__ = (
        "_broken",
        "_drained",
        "_nursery",
        "_out",
        "_readable",
        "_sock",
        "_tls",
        "_tls_in",
        "_tls_out",
        "_writing",
    )

    def __init__(
        self, sock: socket.socket, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._nursery = nursery
        #: The connection broke, or the peer ended its stream: nothing more is written.
        self._broken = False
        #: Whether a read may find data (edge-triggered readiness: see ``read``).
        self._readable = True
        self._out: collections.deque[memoryview] | None = None  # the backlog
        self._writing = False
        self._drained: trio.Event | None = None
        if ssl_context is None:
            self._tls = self._tls_in = self._tls_out = None
        else:
            self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = ssl_context.wrap_bio(self._tls_in, self._tls_out, server_side=True)

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- reading -------------------------------------------------------------------------------

    async def start_tls(self) -> None:
        """The TLS handshake (nothing to do on a plain socket); TransportClosed if it fails."""
        tls = self._tls
        if tls is None:
            return
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ValueError):
                self._flush_tls()  # the alert, if any
                raise TransportClosed(None) from None
            self._flush_tls()
            data = await self._receive_raw()
            if not data:
                raise TransportClosed(None)
            assert self._tls_in is not None
            self._tls_in.write(data)
        self._flush_tls()

    async def receive_bytes(self) -> bytes:
        """Plain bytes as they arrive (decrypted); b"" at the end of the stream."""
        if self._tls is not None:
            # Records already buffered first: the read that ended the handshake may have
            # carried the request too, and the socket will not become readable for it again.
            plain = self._decrypt(b"")
            if plain is None:
                return b""
            if plain:
                return plain
        while True:
            data = await self._receive_raw()
            if self._tls is None or not data:
                return data
            plain = self._decrypt(data)
            if plain is None:
                return b""
            if plain:
                return plain

    def read(self) -> bytes | None:
        """One read of what the socket has (decrypted), without waiting: None when nothing is
        there yet, b"" at the end of the stream (or when it broke). A full read leaves
        ``_readable`` set: more may be waiting, and an edge-triggered poller will not say so."""
        self._readable = False
        try:
            data = self._sock.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""
        if len(data) == RECEIVE_SIZE:
            self._readable = True
        if data and self._tls is not None:
            plain = self._decrypt(data)
            if plain is None:
                return b""
            return plain or None  # b"": only part of a TLS record so far
        return data

    async def _receive_raw(self) -> bytes:
        sock = self._sock
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return b""
            try:
                return sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return b""

    def _decrypt(self, data: bytes) -> bytes | None:
        """Plain bytes from TLS records; None once the peer sent close_notify (or broke TLS)."""
        assert self._tls is not None
        assert self._tls_in is not None
        self._tls_in.write(data)
        chunks = []
        ended = False
        while True:
            try:
                chunk = self._tls.read(RECEIVE_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLError, ValueError):
                ended = True
                break
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
        self._flush_tls()
        if chunks:
            return b"".join(chunks)  # an end right after data shows on the next read
        return None if ended else b""

    # -- writing -------------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """How many writes are not fully handed to the kernel yet."""
        return len(self._out) if self._out else 0

    def write(self, data: bytes) -> None:
        """Write ``data`` (encrypted on TLS) now, or queue it behind the backlog."""
        if self._broken:
            return
        tls = self._tls
        if tls is not None:
            try:
                tls.write(data)
            except (ssl.SSLError, ValueError):
                self._gone()
                return
            assert self._tls_out is not None
            data = self._tls_out.read()
        self._write_raw(data)

    async def flush(self) -> None:
        """Wait until the backlog is written (or the connection is gone)."""
        while self._out and not self._broken:
            if self._writing:
                assert self._drained is not None
                await self._drained.wait()
            else:
                await self._wait_writable()
                self._write_backlog()

    def _backlog_written(self) -> None:
        """Called when the backlog is empty again (the node socket answers a pending ping)."""

    def _flush_tls(self) -> None:
        out = self._tls_out
        if out is not None and out.pending:
            self._write_raw(out.read())

    def _write_raw(self, data: bytes) -> None:
        if self._broken or not data:
            return
        out = self._out
        if out:
            out.append(memoryview(data))
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._gone()
            return
        if sent == len(data):
            return
        self._out = collections.deque((memoryview(data)[sent:],))
        if not self._writing:
            self._writing = True
            self._drained = trio.Event()
            self._nursery.start_soon(self._writer)

    def _write_backlog(self) -> None:
        out = self._out
        if not out:
            return
        try:
            sent = self._sock.sendmsg(list(itertools.islice(out, _IOV_MAX)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone()
            return
        while out and sent >= len(out[0]):
            sent -= len(out.popleft())
        if sent:
            out[0] = out[0][sent:]
        if not out:
            self._out = None
            self._backlog_written()

    async def _wait_writable(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self._sock)
        except trio.ClosedResourceError:
            self._gone()

    async def _writer(self) -> None:
        try:
            while self._out and not self._broken:
                await self._wait_writable()
                self._write_backlog()
        finally:
            self._writing = False
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    # -- the end -------------------------------------------------------------------------------

    def _gone(self) -> None:
        """The connection broke (or the peer ended its stream)."""
        self._broken = True
        self._out = None

    async def linger(self) -> None:
        """End our half after what is written, then read and drop what the peer still sends,
        until it ends its half, for at most LINGER_SECONDS and LINGER_BYTES (the lingering
        close of web servers). Closing with the peer's bytes unread would reset the stream, and
        a peer still writing would lose what we wrote last (a close frame and its code)."""
        self._end_tls()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        dropped = 0
        with trio.move_on_after(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                try:
                    data = self._sock.recv(RECEIVE_SIZE)
                except (BlockingIOError, InterruptedError):
                    await trio.lowlevel.wait_readable(self._sock)
                    continue
                except OSError:
                    return
                if not data:
                    return
                dropped += len(data)

    def _end_tls(self) -> None:
        """A TLS close_notify, if it can go at once (best effort)."""
        if self._tls is not None and self._tls_out is not None:
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                self._tls.unwrap()
            with contextlib.suppress(OSError):
                if self._tls_out.pending:
                    self._sock.send(self._tls_out.read())

    def close_socket(self) -> None:
        """Close now (best effort: a TLS close_notify if it can go at once)."""
        self._gone()
        self._end_tls()
        trio.lowlevel.notify_closing(self._sock)  # wakes the writer, if one waits
        self._sock.close()
