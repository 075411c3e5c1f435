"""NetworkService and AdminService on every storage backend (memory, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import trio

from grass.domain.admin import AuditAction, BanKind
from grass.domain.devices import DeviceStatus
from grass.domain.score import NetworkScore, ScoreComponents
from grass.domain.users import Profile, Role, UserStatus
from grass.errors import Conflict, Forbidden, NotFound, ValidationFailed
from grass.ids import new_uuid
from grass.services.admin import AdminService
from grass.services.bans import BanGuard
from grass.services.flags import FeatureFlags, FlagSource
from grass.services.live import LiveEvents
from grass.services.network import DeviceNotFound, NetworkService
from grass.storage.inprocess import InProcessPresence, InProcessPubSub
from grass.storage.inprocess.event_log import InProcessEventLog
from grass.storage.shared_state import unframe, user_channel
from tests.storage.conftest import T0, add_device, add_user, delta, make_entry, make_session

NOW = T0 + dt.timedelta(hours=30)  # Tuesday 06:00 UTC


class Control:
    """Records what the services asked of live nodes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def pause(self, device_id: str) -> None:
        self.calls.append(("pause", device_id))

    async def remove(self, device_id: str) -> None:
        self.calls.append(("remove", device_id))

    async def kick(self, device_id: str) -> None:
        self.calls.append(("kick", device_id))

    async def ban_user(self, user_id: str) -> None:
        self.calls.append(("ban_user", user_id))

    async def disconnect_user(self, user_id: str) -> None:
        self.calls.append(("disconnect_user", user_id))

    async def ban_range(self, network: str) -> None:
        self.calls.append(("ban_range", network))

    async def bans_changed(self) -> None:
        self.calls.append(("bans_changed", ""))

    async def flags_changed(self) -> None:
        self.calls.append(("flags_changed", ""))


@pytest.fixture
def control():
    return Control()


@pytest.fixture
def presence():
    return InProcessPresence()


@pytest.fixture
def network(storage, presence, control):
    return NetworkService(storage, presence, control, lambda: NOW)


@pytest.fixture
def events():
    return InProcessPubSub()


@pytest.fixture
def admin_service(storage, control, events, presence):
    bans = BanGuard(storage.bans, interval=lambda: 60.0)
    flags = FeatureFlags(storage.flags, lambda: {"beta": False, "legacy": True})
    live = LiveEvents(InProcessEventLog(events), events)
    return AdminService(storage, control, presence, bans, flags, live, lambda: NOW)


async def test_devices_with_uptime_today_in_the_users_zone_points_and_status(
    storage, network, presence
):
    # UTC-5: the user's day began at 05:00 UTC, so Tuesday 04:00 UTC is still "yesterday".
    user = await add_user(storage, profile=Profile(timezone="America/New_York"))
    one = await add_device(storage, user, ip="203.0.113.1")
    later = T0 + dt.timedelta(1)
    two = await add_device(storage, user, ip="203.0.113.1", first_seen=later, last_seen=later)
    await storage.uptime.add_uptime(
        [
            delta(one, T0 + dt.timedelta(hours=28), 600),  # 04:00 UTC Tuesday: yesterday there
            delta(one, T0 + dt.timedelta(hours=29), 900),  # 05:00 UTC: today there
            delta(two, T0 + dt.timedelta(hours=29), 300),
        ]
    )
    await storage.earnings.insert_earnings(
        [make_entry(user, amount=7_000, device_id=one.device_id, ip="203.0.113.1")]
    )
    await presence.update_many({one.device_id: "i1"}, ttl=60)
    page = await network.list_devices(user.id, limit=1)
    (first,) = page.items
    assert first.device_id == one.device_id
    assert first.status == "online"
    assert (first.uptime_today_seconds, first.uptime_total_seconds) == (900, 1500)
    assert first.points == 7_000
    (second,) = (await network.list_devices(user.id, cursor=page.next_cursor)).items
    assert second.status == "offline"
    summary = await network.summary(user.id)
    assert (summary.devices_total, summary.devices_online, summary.ips) == (2, 1, 1)
    assert (summary.uptime_today_seconds, summary.uptime_total_seconds) == (1200, 1800)
    (ip,) = (await network.list_ips(user.id)).items
    assert ip.devices == tuple(sorted([one.device_id, two.device_id]))
    assert (ip.devices_online, ip.uptime_total_seconds, ip.points) == (1, 1800, 7_000)


async def test_an_ips_score_weights_its_devices_by_uptime_in_the_score_window(
    storage, presence, control
):
    user = await add_user(storage)
    parts = dict.fromkeys(("availability", "stability", "latency", "ip_quality"), 0)
    scored = [
        NetworkScore(value=value, components=ScoreComponents(**parts), computed_at=T0)
        for value in (80, 20)
    ]
    old = await add_device(storage, user, ip="203.0.113.9", score=scored[0])
    new = await add_device(storage, user, ip="203.0.113.9", score=scored[1])
    await storage.uptime.add_uptime(
        [
            delta(old, T0 + dt.timedelta(hours=2), 3600),  # 28 h before NOW
            delta(new, T0 + dt.timedelta(hours=29), 900),
        ]
    )

    async def ip_score(window: dt.timedelta) -> int | None:
        network = NetworkService(
            storage, presence, control, lambda: NOW, score_window=lambda: window
        )
        (ip,) = (await network.list_ips(user.id)).items
        return ip.score

    # 24 h: the old device has no uptime in the window and counts once, (80 + 20 * 900) // 901.
    assert await ip_score(dt.timedelta(hours=24)) == 20
    # 48 h: both count by their uptime, (80 * 3600 + 20 * 900) // 4500.
    assert await ip_score(dt.timedelta(hours=48)) == 68


async def test_another_users_device_is_not_found(storage, network, control):
    owner = await add_user(storage)
    other = await add_user(storage)
    device = await add_device(storage, owner)
    for action in (network.get_device, network.pause, network.resume, network.remove):
        with pytest.raises(DeviceNotFound):
            await action(other.id, device.device_id)
    with pytest.raises(NotFound):
        await network.rename(other.id, device.device_id, "mine now")
    with pytest.raises(NotFound):
        await network.get_device(owner.id, "not-a-uuid")
    assert control.calls == []
    assert (await storage.devices.get_device(device.device_id)) == device


async def test_rename_pause_resume_remove(storage, network, control):
    user = await add_user(storage)
    device = await add_device(storage, user)
    assert (await network.rename(user.id, device.device_id, "  kitchen ")).name == "kitchen"
    assert (await network.rename(user.id, device.device_id, "   ")).name is None
    with pytest.raises(ValidationFailed):
        await network.rename(user.id, device.device_id, "x" * 65)
    paused = await network.pause(user.id, device.device_id)
    assert paused.status == "paused"
    assert (await storage.devices.get_device(device.device_id)).paused
    assert (await network.summary(user.id)).devices_paused == 1
    assert (await network.resume(user.id, device.device_id)).status == "offline"
    await network.remove(user.id, device.device_id)
    assert await storage.devices.find_device(device.device_id) is None
    assert control.calls == [("pause", device.device_id), ("remove", device.device_id)]


async def test_admin_actions_need_an_active_admin(storage, admin_service):
    user = await add_user(storage)
    banned_admin = await add_user(storage, role=Role.ADMIN, status=UserStatus.SUSPENDED)
    for actor in (user.id, banned_admin.id, "nobody"):
        with pytest.raises(Forbidden):
            await admin_service.list_bans(actor)
        with pytest.raises(Forbidden):
            await admin_service.ban_range(actor, "10.0.0.0/8")
    assert (await storage.bans.list_bans()).items == ()


async def test_bans_are_audited_and_reach_the_guard(storage, admin_service, control):
    admin = await add_user(storage, role=Role.ADMIN)
    user = await add_user(storage)
    ban = await admin_service.ban_range(admin.id, "203.0.113.0/24", reason="abuse", ip="192.0.2.1")
    with pytest.raises(Conflict):
        await admin_service.ban_range(admin.id, "203.0.113.0/24")
    with pytest.raises(ValidationFailed):
        await admin_service.ban_range(admin.id, "203.0.113.1/24")
    assert admin_service._bans.banned_range("203.0.113.9") == "203.0.113.0/24"
    user_ban = await admin_service.ban_user(admin.id, user.id)
    assert (await storage.users.get_user(user.id)).status is UserStatus.BANNED
    assert admin_service._bans.user_banned(user.id)
    with pytest.raises(Conflict):
        await admin_service.ban_user(admin.id, admin.id)  # an admin
    with pytest.raises(NotFound):
        await admin_service.ban_user(admin.id, "not-an-id")
    await admin_service.lift_ban(admin.id, user_ban.id)
    assert (await storage.users.get_user(user.id)).status is UserStatus.ACTIVE
    with pytest.raises(NotFound):
        await admin_service.lift_ban(admin.id, user_ban.id)
    assert not admin_service._bans.user_banned(user.id)
    listed = await admin_service.list_bans(admin.id, kind=BanKind.IP_RANGE)
    assert listed.items == (ban,)
    log = (await admin_service.audit_log(admin.id)).items
    assert [e.action for e in log] == [
        AuditAction.USER_UNBAN,
        AuditAction.USER_BAN,
        AuditAction.IP_BAN,
    ]
    assert log[-1].ip == "192.0.2.1"
    assert log[-1].details == {"reason": "abuse"}
    assert ("ban_range", "203.0.113.0/24") in control.calls
    assert ("ban_user", user.id) in control.calls


async def test_flag_overrides_win_until_cleared(storage, admin_service):
    admin = await add_user(storage, role=Role.ADMIN)
    views = (await admin_service.list_flags(admin.id)).items
    assert [(v.name, v.enabled, v.source) for v in views] == [
        ("beta", False, FlagSource.CONFIG),
        ("legacy", True, FlagSource.CONFIG),
    ]
    view = await admin_service.set_flag(admin.id, "beta", True)
    assert (view.enabled, view.source, view.config_value) == (True, FlagSource.OVERRIDE, False)
    await admin_service.set_flag(admin.id, "new_thing", True)
    page = await admin_service.list_flags(admin.id, limit=2)
    assert [v.name for v in page.items] == ["beta", "legacy"]
    rest = await admin_service.list_flags(admin.id, cursor=page.next_cursor)
    assert [v.name for v in rest.items] == ["new_thing"]
    await admin_service.clear_flag(admin.id, "beta")
    with pytest.raises(NotFound):
        await admin_service.clear_flag(admin.id, "beta")
    assert admin_service._flags.enabled("beta") is False
    with pytest.raises(ValidationFailed):
        await admin_service.set_flag(admin.id, "Bad Name", True)
    actions = [e.action for e in (await admin_service.audit_log(admin.id)).items]
    assert actions == [AuditAction.FLAG_CLEAR, AuditAction.FLAG_SET, AuditAction.FLAG_SET]


async def test_banning_a_user_revokes_and_announces_its_sessions(storage, admin_service, events):
    admin = await add_user(storage, role=Role.ADMIN)
    user = await add_user(storage)
    session = make_session(user, expires_at=NOW + dt.timedelta(days=1))
    await storage.users.create_session(session)
    async with events.subscribe(user_channel(user.id)) as messages:
        await admin_service.ban_user(admin.id, user.id, reason="fraud")
        with trio.fail_after(1):
            got = [unframe(await messages.__anext__()) for _ in range(2)]
    assert [(i, json.loads(p)) for i, p in got] == [
        (None, {"type": "session_revoked", "session": session.token_hash}),
        (None, {"type": "account_closed"}),
    ]
    assert (await storage.users.get_session(session.token_hash)).revoked_at == NOW


async def test_connections_are_the_online_devices_the_presence_map_confirms(
    storage, admin_service, presence
):
    admin = await add_user(storage, role=Role.ADMIN)
    user = await add_user(storage)
    live = await add_device(storage, user, status=DeviceStatus.ONLINE)
    stale = await add_device(storage, user, status=DeviceStatus.ONLINE)  # its instance died
    await add_device(storage, user)
    await presence.update_many({live.device_id: "i7"}, ttl=60)
    page = await admin_service.list_connections(admin.id)
    assert [(c.device_id, c.instance) for c in page.items] == [(live.device_id, "i7")]
    with pytest.raises(NotFound):
        await admin_service.kick(admin.id, new_uuid())
    await admin_service.kick(admin.id, stale.device_id)
    assert (await admin_service.audit_log(admin.id)).items[0].target_id == stale.device_id
