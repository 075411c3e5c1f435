"""BanStore, FlagStore and AuditStore: the operators' stores, on every backend."""

from __future__ import annotations

import attrs
import pytest

from grass.domain._checks import InvalidModel
from grass.domain.admin import AuditAction, AuditEntry, Ban, BanKind, FlagOverride
from grass.domain.devices import DeviceStatus
from grass.domain.pages import InvalidPage
from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound, TransactionAborted
from grass.ids import short_id
from tests.storage.conftest import add_device, add_user, at, collect


def ip_ban(admin: str, target: str = "203.0.113.0/24", hours: float = 0, **overrides) -> Ban:
    fields = {
        "id": short_id(),
        "kind": BanKind.IP_RANGE,
        "target": target,
        "created_by": admin,
        "created_at": at(hours),
    }
    return Ban(**(fields | overrides))


def user_ban(admin: str, user_id: str, hours: float = 0) -> Ban:
    return Ban(
        id=short_id(),
        kind=BanKind.USER,
        target=user_id,
        reason="spam",
        created_by=admin,
        created_at=at(hours),
    )


def entry(actor: str | None, hours: float = 0, **overrides) -> AuditEntry:
    fields = {
        "actor_id": actor,
        "action": AuditAction.IP_BAN,
        "target_type": "ip_range",
        "target_id": "203.0.113.0/24",
        "details": {"reason": "abuse", "n": 1},
        "ip": "198.51.100.4",
        "at": at(hours),
    }
    return AuditEntry(**(fields | overrides))


def test_ban_targets_are_validated():
    admin = short_id()
    with pytest.raises(InvalidModel):
        ip_ban(admin, "10.0.0.1/8")  # host bits set: refused, not widened
    with pytest.raises(InvalidModel):
        ip_ban(admin, "not a range")
    with pytest.raises(InvalidModel):
        ip_ban(admin, "2001:DB8::/32")  # not canonical
    with pytest.raises(InvalidModel):
        ip_ban(admin, "::ffff:10.0.0.0/104")  # IPv4-mapped: write it as IPv4
    with pytest.raises(InvalidModel):
        Ban(id=short_id(), kind=BanKind.USER, target="x", created_by=admin, created_at=at())
    with pytest.raises(InvalidModel):
        ip_ban(admin, lifted_at=at(-1))
    assert str(ip_ban(admin, "2001:db8::/32").network) == "2001:db8::/32"


async def test_ban_round_trip_and_one_active_ban_per_target(storage):
    admin = await add_user(storage)
    ban = ip_ban(admin.id, reason="botnet")
    await storage.bans.add_ban(ban)
    assert await storage.bans.get_ban(ban.id) == ban
    assert await storage.bans.find_ban(BanKind.IP_RANGE, ban.target) == ban
    assert await storage.bans.find_ban(BanKind.IP_RANGE, "10.0.0.0/8") is None
    with pytest.raises(StorageConflict):
        await storage.bans.add_ban(ip_ban(admin.id, ban.target))
    with pytest.raises(StorageNotFound):
        await storage.bans.get_ban(short_id())


async def test_a_ban_needs_its_user_and_author(storage):
    admin = await add_user(storage)
    with pytest.raises(IntegrityViolation):
        await storage.bans.add_ban(user_ban(admin.id, short_id()))
    with pytest.raises(IntegrityViolation):
        await storage.bans.add_ban(ip_ban(short_id()))
    await storage.bans.add_ban(ip_ban(None))  # an author may be unknown (its account went)


async def test_lifting_keeps_the_ban_as_history(storage):
    admin = await add_user(storage)
    ban = ip_ban(admin.id)
    await storage.bans.add_ban(ban)
    lifted = await storage.bans.lift_ban(ban.id, at(2))
    assert lifted.lifted_at == at(2)
    assert await storage.bans.get_ban(ban.id) == lifted
    assert await storage.bans.find_ban(BanKind.IP_RANGE, ban.target) is None
    with pytest.raises(StorageNotFound):
        await storage.bans.lift_ban(ban.id, at(3))
    again = ip_ban(admin.id, ban.target, hours=3)
    await storage.bans.add_ban(again)  # the target is free again
    assert (await storage.bans.list_bans()).items == (again,)
    assert (await storage.bans.list_bans(include_lifted=True)).items == (again, lifted)


async def test_ban_targets_by_kind(storage):
    admin = await add_user(storage)
    users = [await add_user(storage), await add_user(storage)]
    ranges = [ip_ban(admin.id, t) for t in ("10.0.0.0/8", "2001:db8::/32", "198.51.100.7/32")]
    for ban in (*ranges, *(user_ban(admin.id, u.id) for u in users)):
        await storage.bans.add_ban(ban)
    await storage.bans.lift_ban(ranges[0].id, at(1))
    assert await storage.bans.ban_targets(BanKind.IP_RANGE) == {b.target for b in ranges[1:]}
    assert await storage.bans.ban_targets(BanKind.USER) == {u.id for u in users}


async def test_list_bans_pages_newest_first(storage):
    admin = await add_user(storage)
    victim = await add_user(storage)
    bans = [ip_ban(admin.id, f"10.0.{i}.0/24", hours=i % 3) for i in range(7)]
    bans.append(user_ban(admin.id, victim.id, hours=5))
    for ban in bans:
        await storage.bans.add_ban(ban)
    listed = await collect(storage.bans.list_bans, 3)
    assert listed == sorted(bans, key=lambda b: (b.created_at, b.id), reverse=True)
    users = await collect(lambda **kw: storage.bans.list_bans(kind=BanKind.USER, **kw), 2)
    assert users == [bans[-1]]
    ranges = await collect(lambda **kw: storage.bans.list_bans(kind=BanKind.IP_RANGE, **kw), 4)
    assert len(ranges) == 7
    with pytest.raises(InvalidPage):
        await storage.bans.list_bans(cursor="garbage")
    with pytest.raises(InvalidPage):
        await storage.bans.list_bans(limit=0)


async def test_flags_set_replace_clear(storage):
    admin = await add_user(storage)
    other_admin = await add_user(storage)
    assert await storage.flags.list_flags() == []
    on = FlagOverride(name="referrals", enabled=True, updated_by=admin.id, updated_at=at())
    other = FlagOverride(name="checkin.v5", enabled=False, updated_by=admin.id, updated_at=at())
    await storage.flags.set_flag(on)
    await storage.flags.set_flag(other)
    off = FlagOverride(name="referrals", enabled=False, updated_by=other_admin.id, updated_at=at(1))
    await storage.flags.set_flag(off)
    assert await storage.flags.list_flags() == [other, off]
    assert await storage.flags.clear_flag("referrals") is True
    assert await storage.flags.clear_flag("referrals") is False
    assert await storage.flags.list_flags() == [other]
    with pytest.raises(IntegrityViolation):
        await storage.flags.set_flag(
            FlagOverride(name="x", enabled=True, updated_by=short_id(), updated_at=at())
        )


def test_flag_names_are_validated():
    for bad in ("", "Upper", "9lives", "a b", "x" * 65):
        with pytest.raises(InvalidModel):
            FlagOverride(name=bad, enabled=True, updated_by=None, updated_at=at())
    with pytest.raises(InvalidModel):
        FlagOverride(name="ok", enabled=1, updated_by=None, updated_at=at())


async def test_audit_log_numbers_filters_and_pages(storage):
    admin = await add_user(storage)
    other = await add_user(storage)
    stored = [await storage.audit.add_audit(entry(admin.id, hours=i % 4)) for i in range(6)]
    flag = entry(other.id, 2, action=AuditAction.FLAG_SET, target_type="flag", target_id="x")
    stored.append(await storage.audit.add_audit(flag))
    assert len({e.id for e in stored}) == 7
    assert all(e.id for e in stored)
    assert stored[-1] == attrs.evolve(flag, id=stored[-1].id)
    newest_first = sorted(stored, key=lambda e: (e.at, e.id), reverse=True)
    assert await collect(storage.audit.list_audit, 4) == newest_first
    assert (await storage.audit.list_audit(actor_id=other.id)).items == (stored[-1],)
    assert (await storage.audit.list_audit(action=AuditAction.FLAG_SET)).items == (stored[-1],)
    on_range = await collect(
        lambda **kw: storage.audit.list_audit(target_id="203.0.113.0/24", **kw), 5
    )
    assert on_range == [e for e in newest_first if e.target_id == "203.0.113.0/24"]
    assert dict(on_range[0].details) == {"reason": "abuse", "n": 1}
    with pytest.raises(ValueError):
        await storage.audit.add_audit(stored[0])
    with pytest.raises(InvalidPage):
        await storage.audit.list_audit(cursor="garbage")


async def test_deleting_a_user_deletes_its_bans_and_keeps_what_it_authored(storage):
    admin = await add_user(storage)
    victim = await add_user(storage)
    await storage.bans.add_ban(user_ban(admin.id, victim.id))
    authored = ip_ban(admin.id)
    await storage.bans.add_ban(authored)
    await storage.flags.set_flag(
        FlagOverride(name="f", enabled=True, updated_by=admin.id, updated_at=at())
    )
    logged = await storage.audit.add_audit(entry(admin.id))
    await storage.users.delete_user(victim.id)
    assert await storage.bans.ban_targets(BanKind.USER) == frozenset()
    await storage.users.delete_user(admin.id)
    assert (await storage.bans.get_ban(authored.id)).created_by is None
    assert (await storage.flags.list_flags())[0].updated_by is None
    assert (await storage.audit.list_audit()).items[0].id == logged.id
    assert (await storage.audit.list_audit()).items[0].actor_id is None


async def test_a_ban_and_its_audit_entry_commit_or_roll_back_together(storage):
    admin = await add_user(storage)
    ban = ip_ban(admin.id)
    with pytest.raises(TransactionAborted):  # noqa: PT012 (the rollback is the subject)
        async with storage.transaction() as tx:
            await tx.bans.add_ban(ban)
            await tx.audit.add_audit(entry(admin.id))
            with pytest.raises(StorageConflict):
                await tx.bans.add_ban(ip_ban(admin.id, ban.target))
    assert await storage.bans.find_ban(BanKind.IP_RANGE, ban.target) is None
    assert (await storage.audit.list_audit()).items == ()
    async with storage.transaction() as tx:
        await tx.bans.add_ban(ban)
        await tx.audit.add_audit(entry(admin.id))
    assert await storage.bans.get_ban(ban.id) == ban
    assert len((await storage.audit.list_audit()).items) == 1


async def test_online_devices_of_every_user_by_id(storage):
    users = [await add_user(storage), await add_user(storage)]
    online = [await add_device(storage, users[i % 2], status=DeviceStatus.ONLINE) for i in range(5)]
    await add_device(storage, users[0])  # offline
    listed = await collect(storage.connections.list_online_devices, 2)
    assert listed == sorted(online, key=lambda d: d.device_id)
    with pytest.raises(InvalidPage):
        await storage.connections.list_online_devices(cursor="garbage")
