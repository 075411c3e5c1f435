"""ReferralStore."""

from __future__ import annotations

import base64

import pytest

from grass.domain.referrals import ReferralStatus
from grass.errors import IntegrityViolation, StorageConflict
from tests.storage.conftest import add_user, at, collect, make_referral, make_user


async def _chain(storage):
    """d registers with c's code: c is level 1, b level 2, a level 3."""
    a, b, c, d = [await add_user(storage) for _ in range(4)]
    links = [make_referral(c, d, 1), make_referral(b, d, 2), make_referral(a, d, 3)]
    await storage.referrals.add_referrals(links)
    return (a, b, c, d), links


async def test_chain_round_trip(storage):
    (a, b, _c, d), links = await _chain(storage)
    chains = await storage.referrals.referrers_of([d.id, a.id])
    assert chains == {d.id: tuple(links)}
    assert await storage.referrals.count_referrals(b.id) == {1: 0, 2: 1, 3: 0}


async def test_uniqueness_and_references(storage):
    (a, _b, c, d), _ = await _chain(storage)
    e = await add_user(storage)
    with pytest.raises(StorageConflict):
        await storage.referrals.add_referrals([make_referral(c, d, 1)])
    with pytest.raises(StorageConflict):  # d already has a level-1 referrer
        await storage.referrals.add_referrals([make_referral(e, d, 1)])
    with pytest.raises(IntegrityViolation):
        await storage.referrals.add_referrals([make_referral(make_user(), e, 1)])
    with pytest.raises(IntegrityViolation):
        await storage.referrals.add_referrals([make_referral(e, make_user(), 1)])
    # A failing batch writes nothing.
    with pytest.raises(StorageConflict):
        await storage.referrals.add_referrals([make_referral(a, e, 1), make_referral(c, d, 1)])
    assert await storage.referrals.referrers_of([e.id]) == {}


async def test_list_referrals_by_level(storage):
    referrer = await add_user(storage)
    referees = [await add_user(storage) for _ in range(5)]
    links = [
        make_referral(referrer, r, level=1 + i % 2, created_at=at(i // 2))
        for i, r in enumerate(referees)
    ]
    await storage.referrals.add_referrals(links)
    listed = await collect(
        lambda **kw: storage.referrals.list_referrals(referrer.id, **kw), limit=2
    )
    assert listed == sorted(links, key=lambda r: (r.created_at, r.ref))
    level2 = await storage.referrals.list_referrals(referrer.id, level=2)
    assert set(level2.items) == {r for r in links if r.level == 2}
    assert await storage.referrals.count_referrals(referrer.id) == {1: 3, 2: 2, 3: 0}
    await storage.referrals.promote_referees([referees[0].id], ReferralStatus.QUALIFIED)
    qualified = await storage.referrals.count_referrals(
        referrer.id, status=ReferralStatus.QUALIFIED
    )
    assert qualified == {1: 1, 2: 0, 3: 0}


async def test_status_belongs_to_the_referee(storage):
    (a, _b, c, d), _ = await _chain(storage)
    assert await storage.referrals.promote_referees([d.id], ReferralStatus.ACTIVE) == 3
    assert await storage.referrals.promote_referees([d.id], ReferralStatus.ACTIVE) == 0
    chain = (await storage.referrals.referrers_of([d.id]))[d.id]
    assert {r.status for r in chain} == {ReferralStatus.ACTIVE}
    assert await storage.referrals.promote_referees([a.id], ReferralStatus.QUALIFIED) == 0
    # Many at once (c is no referee: nothing), and never down: qualified stays qualified
    # when "active" comes late.
    assert await storage.referrals.promote_referees([c.id, d.id], ReferralStatus.QUALIFIED) == 3
    assert await storage.referrals.promote_referees([c.id, d.id], ReferralStatus.ACTIVE) == 0
    chain = (await storage.referrals.referrers_of([d.id]))[d.id]
    assert {r.status for r in chain} == {ReferralStatus.QUALIFIED}
    assert await storage.referrals.promote_referees([], ReferralStatus.ACTIVE) == 0


async def test_the_referral_list_names_no_referee_in_its_order_or_cursors(storage):
    """A referrer is handed the list's cursors: they carry the referee's reference, never its
    user id (hardening #13, finding 6). The reference is the domain's, on every backend."""
    referrer = await add_user(storage)
    referees = [await add_user(storage) for _ in range(7)]
    links = [make_referral(referrer, r, created_at=at(0)) for r in referees]  # all one instant
    await storage.referrals.add_referrals(links)
    listed, cursor, cursors = [], None, []
    while True:
        page = await storage.referrals.list_referrals(referrer.id, cursor=cursor, limit=3)
        listed.extend(page.items)
        if (cursor := page.next_cursor) is None:
            break
        cursors.append(cursor)
    assert listed == sorted(links, key=lambda r: r.ref)
    assert len(cursors) == 2
    decoded = "".join(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)).decode() for c in cursors)
    assert not any(r.id in decoded for r in referees)
    # Another referrer of the same referee sees another reference.
    other = make_referral(referees[0], referees[1], created_at=at(1))
    assert other.ref != links[1].ref
    assert len({r.ref for r in links}) == len(links)
