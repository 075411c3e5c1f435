"""The registry of live sessions: caps per user and per IP, replacement, sends."""

from __future__ import annotations

import uuid

import pytest

from grass.nodes.protocol import NodeConnection
from grass.nodes.registry import (
    REPLACED,
    DeviceLimit,
    IpLimit,
    Registry,
    ScoreTooLow,
    StoredDeviceLimit,
)
from grass.nodes.session import NodeSession
from grass.services.admission import PAUSED, DeviceOwnedElsewhere
from tests.domain.test_uptime import accrual
from tests.nodes.test_session import FakeTransport, clock


def registry(**limits) -> Registry:
    return Registry(
        max_devices_per_user=lambda: limits.get("devices", 3),
        max_connections_per_ip=lambda: limits.get("per_ip", 2),
        min_network_score=lambda: limits.get("min_score", 0.0),
        score_of=limits.get("score_of", lambda _: None),
        max_stored_devices_per_user=lambda: limits.get("stored", 1000),
    )


def session(user_id: str, device_id: str | None = None, *, saved: bool = False) -> NodeSession:
    async def never(*_):
        raise AssertionError("not run")

    transport = FakeTransport()
    transport.stalled = True  # the session does not run: nothing it sends is written
    s = NodeSession(
        transport,
        NodeConnection(),
        ip="203.0.113.1",
        authorize=never,
        on_close=never,
        clock=clock,
        auth_timeout=30,
        heartbeat_timeout=180,
        send_queue_size=1,  # one message being written, one waiting
    )
    s.accrual = accrual(user_id=user_id, device_id=device_id or str(uuid.uuid4()), saved=saved)
    return s


USER = "u" * 21


def test_connections_per_ip_are_capped_and_released():
    reg = registry(per_ip=2)
    reg.open("10.0.0.1")
    reg.open("10.0.0.1")
    with pytest.raises(IpLimit) as caught:
        reg.open("10.0.0.1")
    assert caught.value.ws_close_code == 1008
    reg.open("10.0.0.2")  # another address is not affected
    reg.release("10.0.0.1")
    reg.open("10.0.0.1")
    assert reg.connections_from("10.0.0.1") == 2


def test_new_devices_are_refused_once_the_user_stores_the_most_devices():
    """The active cap alone let a node key store new device ids without end."""
    reg = registry(devices=100, stored=3)
    unsaved = session(USER)
    reg.add(unsaved)
    # two devices stored, one live here not written yet: a third new device id is refused
    with pytest.raises(StoredDeviceLimit) as caught:
        reg.check(USER, str(uuid.uuid4()), recent=0, active=False, stored=2)
    assert caught.value.ws_close_code == 1008
    assert caught.value.code == "stored_device_limit"
    assert "stored device limit reached (3 devices)" in caught.value.message
    # a stored device (no count given) and the live one always get back in
    reg.check(USER, str(uuid.uuid4()), recent=0, active=False, stored=None)
    reg.check(USER, unsaved.device_id, recent=0, active=False, stored=2)
    # once the live device is written, storage counts it: room for one more
    unsaved.accrual.saved = True
    reg.check(USER, str(uuid.uuid4()), recent=0, active=False, stored=2)


def test_devices_per_user_count_live_and_recently_seen_devices():
    reg = registry(devices=3)
    live = session(USER)
    reg.add(live)
    # two devices seen lately, one live here that storage does not count yet: the cap of 3
    with pytest.raises(DeviceLimit):
        reg.check(USER, str(uuid.uuid4()), recent=2, active=False)
    # a device seen lately and a device already live always get back in
    reg.check(USER, str(uuid.uuid4()), recent=2, active=True)
    reg.check(USER, live.device_id, recent=2, active=False)
    # once storage counts the live device, it is counted there only
    live.accrual.recent = True
    reg.check(USER, str(uuid.uuid4()), recent=2, active=False)
    # devices stored long ago are not recent: they hold no place
    live.accrual.recent = False
    reg.check(USER, str(uuid.uuid4()), recent=0, active=False)
    # another user is not affected
    reg.check("v" * 21, str(uuid.uuid4()), recent=0, active=False)


def test_a_device_live_under_another_user_is_refused_not_replaced():
    reg = registry()
    theirs = session(USER)
    reg.add(theirs)
    with pytest.raises(DeviceOwnedElsewhere):
        reg.check("v" * 21, theirs.device_id, recent=0, active=False)
    with pytest.raises(DeviceOwnedElsewhere):
        reg.add(session("v" * 21, theirs.device_id))
    assert theirs.close_code is None
    assert reg.get(theirs.device_id) is theirs


def test_a_second_connection_of_a_device_closes_the_older():
    reg = registry()
    device_id = str(uuid.uuid4())
    older, newer = session(USER, device_id), session(USER, device_id)
    reg.add(older)
    reg.add(newer)
    assert older.close_code == REPLACED == 4000
    assert newer.close_code is None
    assert reg.get(device_id) is newer
    reg.remove(older)  # the older's cleanup must not unregister the newer
    assert reg.get(device_id) is newer
    assert reg.devices_of(USER) == {device_id}
    reg.remove(newer)
    assert reg.get(device_id) is None
    assert reg.devices_of(USER) == frozenset()


def test_low_score_is_refused_and_pause_closes_4001():
    reg = registry(min_score=50.0, score_of=lambda d: 20.0 if d.startswith("0") else None)
    with pytest.raises(ScoreTooLow):
        reg.check(USER, "0" + str(uuid.uuid4())[1:], recent=0, active=True)
    reg.check(USER, "1" + str(uuid.uuid4())[1:], recent=0, active=True)  # no score yet
    s = session(USER)
    reg.add(s)
    assert reg.pause(s.device_id)
    assert s.close_code == PAUSED == 4001
    assert not reg.pause(str(uuid.uuid4()))


def test_targeted_and_broadcast_sends():
    reg = registry()
    a, b, c = session(USER), session(USER), session("v" * 21)
    for s in (a, b, c):
        reg.add(s)
    assert reg.send(a.device_id, "one")
    assert not reg.send(str(uuid.uuid4()), "nobody")
    assert reg.broadcast("mine", user_id=USER) == 2
    assert reg.broadcast("all") == 2  # a already holds two: its queue overflows
    assert list(_queued(a)) == ["one", "mine"]  # one written, one queued: the third overflowed
    assert a.close_code == 4003
    assert _queued(c) == ["all"]


def _queued(s: NodeSession) -> list[str]:
    return list(s.transport.unsent)
