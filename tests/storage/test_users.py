"""UserStore: users, sessions, API keys and wallets."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain.earnings import EarningSource
from grass.domain.users import Profile, Role, WalletLink
from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound
from tests.storage.conftest import (
    T0,
    add_device,
    add_user,
    at,
    collect,
    delta,
    make_api_key,
    make_entry,
    make_notification,
    make_referral,
    make_session,
    make_user,
    sha,
)

ADDRESS = "0x" + "ab" * 20


async def test_user_round_trip_and_lookups(storage):
    user = make_user(
        email="Alice@Example.COM", profile=Profile(display_name="A", timezone="Asia/Kolkata")
    )
    await storage.users.create_user(user)
    assert await storage.users.get_user(user.id) == user
    assert await storage.users.find_user_by_email("ALICE@example.com ") == user
    assert await storage.users.find_user_by_referral_code(user.referral_code) == user
    assert await storage.users.find_user_by_email("bob@example.com") is None
    assert await storage.users.find_user_by_referral_code("nope-nope") is None


async def test_user_uniqueness(storage):
    user = await add_user(storage)
    with pytest.raises(StorageConflict):
        await storage.users.create_user(make_user(id=user.id))
    with pytest.raises(StorageConflict):
        await storage.users.create_user(make_user(email=user.email.upper()))
    with pytest.raises(StorageConflict):
        await storage.users.create_user(make_user(referral_code=user.referral_code))
    assert (await storage.users.list_users()).items == (user,)


async def test_update_user(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    admin = attrs.evolve(user, role=Role.ADMIN, email_verified=True)
    await storage.users.update_user(admin)
    assert await storage.users.get_user(user.id) == admin
    with pytest.raises(StorageConflict):
        await storage.users.update_user(attrs.evolve(user, email=other.email))
    assert await storage.users.get_user(user.id) == admin
    with pytest.raises(StorageNotFound):
        await storage.users.update_user(make_user())


async def test_get_and_delete_missing_user(storage):
    with pytest.raises(StorageNotFound):
        await storage.users.get_user(make_user().id)
    with pytest.raises(StorageNotFound):
        await storage.users.delete_user(make_user().id)


async def test_delete_user_cascades(storage):
    user, friend, referee = [await add_user(storage) for _ in range(3)]
    device = await add_device(storage, user)
    await storage.users.create_session(make_session(user))
    await storage.users.create_api_key(make_api_key(user))
    await storage.users.set_wallet(WalletLink(user_id=user.id, address=ADDRESS, linked_at=T0))
    await storage.uptime.add_uptime([delta(device)])
    own_credit = make_entry(user)
    await storage.earnings.insert_earnings([own_credit])
    await storage.referrals.add_referrals(
        [make_referral(friend, user), make_referral(user, referee)]
    )
    await storage.notifications.add_notification(make_notification(user))
    friend_credit = make_entry(
        friend, source=EarningSource.REFERRAL, referee_id=user.id, referral_level=1
    )
    await storage.earnings.insert_earnings([friend_credit])

    await storage.users.delete_user(user.id)

    assert await storage.users.find_user_by_email(user.email) is None
    assert await storage.devices.find_device(device.device_id) is None
    assert (await storage.users.list_sessions(user.id)).items == ()
    assert (await storage.users.list_api_keys(user.id)).items == ()
    assert await storage.users.get_wallet(user.id) is None
    assert (await storage.uptime.uptime_stats(user_id=user.id)).seconds == 0
    assert (await storage.earnings.earnings_totals(user_id=user.id)).total == 0
    assert await storage.earnings.find_earning(own_credit.idempotency_key) is None
    assert await storage.referrals.referrers_of([user.id, referee.id]) == {}
    assert await storage.notifications.count_unread(user.id) == 0
    assert (await storage.earnings.earnings_totals(user_id=friend.id)).total == 1_000
    # The address and email are free again.
    again = await add_user(storage, email=user.email)
    await storage.users.set_wallet(WalletLink(user_id=again.id, address=ADDRESS, linked_at=T0))


async def test_list_users_pages_in_creation_order(storage):
    users = [await add_user(storage, created_at=at(i % 3)) for i in range(7)]
    expected = sorted(users, key=lambda u: (u.created_at, u.id))
    assert await collect(storage.users.list_users, limit=2) == expected


async def test_session_lifecycle(storage):
    user = await add_user(storage)
    session = make_session(user, ip="198.51.100.7", user_agent="curl")
    await storage.users.create_session(session)
    assert await storage.users.get_session(session.token_hash) == session
    with pytest.raises(StorageConflict):
        await storage.users.create_session(make_session(user, token_hash=session.token_hash))

    revoked = await storage.users.revoke_session(session.token_hash, at(1))
    assert revoked.revoked_at == at(1)
    again = await storage.users.revoke_session(session.token_hash, at(2))
    assert again.revoked_at == at(1)
    assert not (await storage.users.get_session(session.token_hash)).is_active(at(1))


async def test_session_errors(storage):
    with pytest.raises(IntegrityViolation):
        await storage.users.create_session(make_session(make_user()))
    with pytest.raises(StorageNotFound):
        await storage.users.get_session(sha())
    with pytest.raises(StorageNotFound):
        await storage.users.revoke_session(sha(), T0)


async def test_revoke_user_sessions_keeps_one(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    sessions = [make_session(user, created_at=at(i)) for i in range(3)]
    for s in sessions:
        await storage.users.create_session(s)
    foreign = make_session(other)
    await storage.users.create_session(foreign)
    await storage.users.revoke_session(sessions[0].token_hash, at(5))

    revoked = await storage.users.revoke_user_sessions(user.id, at(6), keep=sessions[2].token_hash)
    assert revoked == (sessions[1].token_hash,)
    assert (await storage.users.get_session(sessions[0].token_hash)).revoked_at == at(5)
    assert (await storage.users.get_session(sessions[2].token_hash)).revoked_at is None
    assert (await storage.users.get_session(foreign.token_hash)).revoked_at is None
    active = await storage.users.list_sessions(user.id, active_at=at(7))
    assert active.items == (await storage.users.get_session(sessions[2].token_hash),)


async def test_list_sessions_newest_first_and_expiry_cleanup(storage):
    user = await add_user(storage)
    sessions = [make_session(user, created_at=at(i), expires_at=at(i + 10)) for i in range(5)]
    for s in sessions:
        await storage.users.create_session(s)
    listed = await collect(lambda **kw: storage.users.list_sessions(user.id, **kw), limit=2)
    assert listed == sorted(sessions, key=lambda s: (s.created_at, s.token_hash), reverse=True)
    assert (await storage.users.list_sessions(user.id, active_at=at(12))).items == tuple(
        reversed(sessions[3:])
    )
    assert await storage.users.delete_sessions_expired_before(at(12)) == 2
    assert len((await storage.users.list_sessions(user.id)).items) == 3


async def test_api_keys(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    keys = [make_api_key(user, created_at=at(i)) for i in range(3)]
    for key in keys:
        await storage.users.create_api_key(key)
    assert await storage.users.get_api_key_by_hash(keys[1].key_hash) == keys[1]
    with pytest.raises(StorageConflict):
        await storage.users.create_api_key(make_api_key(user, key_hash=keys[0].key_hash))
    with pytest.raises(StorageConflict):
        await storage.users.create_api_key(make_api_key(user, id=keys[0].id))
    with pytest.raises(IntegrityViolation):
        await storage.users.create_api_key(make_api_key(make_user()))
    with pytest.raises(StorageNotFound):
        await storage.users.get_api_key_by_hash(sha())

    listed = await collect(lambda **kw: storage.users.list_api_keys(user.id, **kw), limit=2)
    assert listed == keys[::-1]
    with pytest.raises(StorageNotFound):
        await storage.users.revoke_api_key(other.id, keys[0].id, at(1))
    assert await storage.users.count_live_api_keys(user.id) == 3
    revoked = await storage.users.revoke_api_key(user.id, keys[0].id, at(1))
    assert revoked.revoked_at == at(1)
    assert await storage.users.count_live_api_keys(user.id) == 2
    assert await storage.users.count_live_api_keys(other.id) == 0
    assert (await storage.users.revoke_api_key(user.id, keys[0].id, at(2))).revoked_at == at(1)

    await storage.users.touch_api_key(keys[2].id, at(3))
    assert (await storage.users.get_api_key_by_hash(keys[2].key_hash)).last_used_at == at(3)
    with pytest.raises(StorageNotFound):
        await storage.users.touch_api_key(make_api_key(user).id, at(3))


async def test_wallet_link(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    assert await storage.users.get_wallet(user.id) is None
    link = WalletLink(user_id=user.id, address=ADDRESS.upper().replace("0X", "0x"), linked_at=T0)
    await storage.users.set_wallet(link)
    assert await storage.users.get_wallet(user.id) == link
    assert link.address == ADDRESS

    replaced = WalletLink(user_id=user.id, address="0x" + "cd" * 20, linked_at=at(1))
    await storage.users.set_wallet(replaced)
    assert await storage.users.get_wallet(user.id) == replaced

    with pytest.raises(StorageConflict):
        await storage.users.set_wallet(
            WalletLink(user_id=other.id, address=replaced.address, linked_at=T0)
        )
    with pytest.raises(IntegrityViolation):
        await storage.users.set_wallet(
            WalletLink(user_id=make_user().id, address=ADDRESS, linked_at=T0)
        )
    # The old address was released by the replacement.
    await storage.users.set_wallet(WalletLink(user_id=other.id, address=ADDRESS, linked_at=T0))

    await storage.users.remove_wallet(user.id)
    assert await storage.users.get_wallet(user.id) is None
    with pytest.raises(StorageNotFound):
        await storage.users.remove_wallet(user.id)


async def test_times_come_back_in_utc(storage):
    local = dt.timezone(dt.timedelta(hours=5, minutes=30))
    user = await add_user(storage, created_at=dt.datetime(2024, 3, 4, 5, 30, tzinfo=dt.UTC))
    got = await storage.users.get_user(user.id)
    assert got.created_at == dt.datetime(2024, 3, 4, 11, 0, tzinfo=local)
    assert got.created_at.utcoffset() == dt.timedelta(0)
