"""The node session on an in-memory transport and virtual time: every timeout exact."""

from __future__ import annotations

import json
import math
import uuid

import pytest
import trio
import trio.lowlevel
import trio.testing

from grass.domain.devices import DeviceType
from grass.domain.uptime import Accrual
from grass.errors import Unauthenticated
from grass.nodes.protocol import Authenticated, NodeConnection
from grass.nodes.session import (
    AUTH_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    SEND_QUEUE_FULL,
    NodeSession,
)
from grass.websocket.errors import TransportClosed

EPOCH = (
    1_700_000_000.0  # wall clock at virtual time 0 (a bucket boundary: 1_700_000_000 % 3600 = 800)
)
USER = "U" * 21


class FakeTransport:
    """The node's end in memory: ``inbox`` is what the node sends, ``sent`` what it received.

    Like a node socket, ``send`` never waits: a stalled node's messages pile up in ``unsent``
    (the socket's unsent bytes), counted by ``backlog``; ``receive`` hands each message to the
    session's ``deliver``. A protocol ping's pong arrives ``rtt`` seconds after it, delivered
    as its round trip."""

    def __init__(self, *, rtt: float = 0.05) -> None:
        self._to_server, self._inbox = trio.open_memory_channel[str | bytes](100)
        self.sent: list[str] = []
        self.unsent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.stalled = False  # the node stops reading: nothing sent reaches it
        self.rtt = rtt
        self.pings = 0  # pongs received
        self._pong_at: float | None = None
        self._waiting: trio.CancelScope | None = None

    @property
    def backlog(self) -> int:
        return len(self.unsent)

    def send(self, text: str) -> None:
        if self.closed is not None:
            return
        if self.stalled:
            self.unsent.append(text)
        else:
            self.sent.append(text)

    async def receive(self, deliver):
        while True:
            event = deliver(await self._next())
            if event is not None:
                return event

    async def _next(self) -> str | bytes | float:
        with trio.CancelScope(deadline=self._pong_at or math.inf) as self._waiting:
            try:
                return await self._inbox.receive()
            except trio.EndOfChannel:
                raise TransportClosed(1000) from None
        self._waiting = None  # the pong is due
        self._pong_at = None
        self.pings += 1
        return self.rtt

    def ping(self) -> None:  # from the timers' task, while the session waits in receive
        self._pong_at = trio.current_time() + self.rtt
        if self._waiting is not None:
            self._waiting.deadline = self._pong_at

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
        if self.stalled:  # a close frame to a node that does not read never leaves either
            await trio.sleep_forever()

    # -- the node's side --------------------------------------------------------------------

    def node_send(self, message: str | bytes | dict) -> None:
        self._to_server.send_nowait(json.dumps(message) if isinstance(message, dict) else message)

    def node_disconnect(self) -> None:
        self._to_server.close()

    def received(self) -> list[dict]:
        return [json.loads(text) for text in self.sent]

    async def auth(self, device_id: str | None = None, user_id: str = USER) -> str:
        await trio.testing.wait_all_tasks_blocked()
        device_id = device_id or str(uuid.uuid4())
        request = self.received()[0]
        assert request["action"] == "AUTH"
        result = {
            "browser_id": device_id,
            "user_id": user_id,
            "user_agent": "test",
            "timestamp": 0,
            "device_type": "extension",
            "version": "4.0.0",
        }
        self.node_send({"id": request["id"], "origin_action": "AUTH", "result": result})
        return device_id

    def ping_(self) -> None:
        self.node_send({"id": str(uuid.uuid4()), "version": "1.0.0", "action": "PING", "data": {}})


def clock() -> float:
    return EPOCH + trio.current_time()


def make_accrual(session: NodeSession, event: Authenticated, *, cap: float = 180.0) -> Accrual:
    return Accrual(
        device_id=event.result.browser_id,
        user_id=event.result.user_id,
        ip=session.ip,
        device_type=DeviceType.EXTENSION,
        version=event.result.version,
        user_agent=event.result.user_agent,
        now=clock(),
        bucket_seconds=3600,
        cap=cap,
    )


class RecordingSession(NodeSession):
    """A NodeSession (slots only) that takes the test's bookkeeping attribute."""


def make_session(transport: FakeTransport, **overrides) -> NodeSession:
    closed: list[NodeSession] = []

    async def authorize(session: NodeSession, event: Authenticated) -> Accrual:
        if event.result.user_id != USER:
            raise Unauthenticated("unknown user")
        return make_accrual(session, event)

    async def on_close(session: NodeSession) -> None:
        closed.append(session)
        if session.accrual is not None:
            session.accrual.close()

    options = {
        "ip": "198.51.100.7",
        "authorize": authorize,
        "on_close": on_close,
        "clock": clock,
        "auth_timeout": 30.0,
        "heartbeat_timeout": 180.0,
        "send_queue_size": 4,
        "rtt_interval": 20.0,
    } | overrides
    session = RecordingSession(transport, NodeConnection(), **options)
    session.on_close_calls = closed  # type: ignore[attr-defined]
    return session


async def run_until_closed(session: NodeSession) -> float:
    await session.run()
    return trio.current_time()


async def test_auth_timeout_is_exact(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport, auth_timeout=30.0)
    ended = await run_until_closed(session)
    assert ended == pytest.approx(30.0, abs=1e-9)
    assert session.close_code == AUTH_TIMEOUT == 1008
    assert transport.closed is not None
    assert transport.closed[0] == 1008
    assert session.on_close_calls == [session]
    assert session.accrual is None


async def test_auth_just_in_time_then_heartbeat_timeout_is_exact(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport, auth_timeout=30.0, heartbeat_timeout=180.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.sleep(29.9)
        await transport.auth()
        for _ in range(3):
            await trio.sleep(60)
            transport.ping_()
        last_ping = trio.current_time()
        await trio.sleep(179.99)
        assert session.close_code is None
        await trio.sleep(0.02)
        assert session.close_code == HEARTBEAT_TIMEOUT
    assert transport.closed == (HEARTBEAT_TIMEOUT, "heartbeat timeout")
    assert last_ping == pytest.approx(29.9 + 180)


async def test_uptime_counts_to_the_last_heartbeat(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth()
        for _ in range(2):
            await trio.sleep(60)
            transport.ping_()
        await trio.sleep(59)  # silent after the last heartbeat, then gone
        transport.node_disconnect()
    deltas = session.accrual.take()
    assert sum(d.stats.seconds for d in deltas) == 120
    assert session.close_code == 1000  # the node's own close


async def test_more_pings_earn_no_more(autojump_clock):
    async def run(interval: float) -> int:
        transport = FakeTransport()
        session = make_session(transport)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await transport.auth()
            start = trio.current_time()
            while trio.current_time() - start < 600:
                await trio.sleep(interval)
                transport.ping_()
            await trio.lowlevel.checkpoint()
            transport.node_disconnect()
        return sum(d.stats.seconds for d in session.accrual.take())

    slow = await run(60.0)
    fast = await run(0.5)
    assert slow == fast == 600


async def test_pongs_answer_pings_and_rtt_is_measured(autojump_clock):
    transport = FakeTransport(rtt=0.05)
    session = make_session(transport, rtt_interval=20.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth()
        for _ in range(3):
            await trio.sleep(30)
            transport.ping_()
        await trio.sleep(1)
        transport.node_disconnect()
    pongs = [m for m in transport.received() if m.get("action") == "PONG"]
    assert len(pongs) == 3
    stats = session.accrual.take()[0].stats
    assert stats.rtt_count == transport.pings == 4  # at 20, 40, 60, 80 s
    assert stats.rtt_sum_ms == 4 * 50
    assert stats.rtt_max_ms == 50


async def test_a_node_that_stops_reading_is_closed_when_its_queue_fills(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport, send_queue_size=4, close_timeout=5.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth()
        await trio.sleep(1)
        transport.stalled = True
        for _ in range(4 + 2):  # one PONG is being written, four wait, the next overflows
            transport.ping_()
            await trio.sleep(0.01)
        closed_at = trio.current_time()
    assert session.close_code == SEND_QUEUE_FULL
    assert transport.closed is not None
    assert transport.closed[0] == SEND_QUEUE_FULL
    # cleanup is bounded: the close frame to a stalled node is given up after close_timeout
    assert trio.current_time() - closed_at == pytest.approx(5.0, abs=0.1)
    assert session.on_close_calls == [session]


async def test_refused_auth_closes_with_the_error_code(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth(user_id="V" * 21)
    assert session.close_code == 1008
    assert transport.closed == (1008, "unknown user")
    assert session.accrual is None


async def test_bad_messages_after_auth_get_an_error_and_keep_the_session(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth()
        transport.node_send("{not json")
        transport.node_send({"id": "x", "action": "DANCE", "data": {}})
        transport.ping_()
        await trio.sleep(1)
        assert session.close_code is None
        transport.node_send(b"\x00binary")
    errors = [m["data"]["code"] for m in transport.received() if m.get("action") == "ERROR"]
    assert errors == ["malformed_json", "unknown_action"]
    assert any(m.get("action") == "PONG" for m in transport.received())
    assert session.close_code == 1003


async def test_a_message_before_auth_closes_1008(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.lowlevel.checkpoint()
        transport.ping_()
    assert session.close_code == 1008
    assert trio.current_time() < 1


async def test_server_close_is_prompt_and_cleanup_runs(autojump_clock):
    transport = FakeTransport()
    session = make_session(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await transport.auth()
        await trio.sleep(10)
        session.close(1001, "server shutting down")
    assert transport.closed == (1001, "server shutting down")
    assert session.on_close_calls == [session]
    assert not session.send("late")
