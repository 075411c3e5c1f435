"""PayoutStore, the bucket closer's store: priced lines (frozen by the revision that first paid
them), atomic revisions, what a re-run hands to the ledger again."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from grass.domain import payouts as rules
from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningSource
from grass.domain.referrals import ReferralStatus
from grass.domain.score import NetworkScore, ScoreComponents
from grass.errors import IntegrityViolation, StorageConflict
from grass.storage.payouts import BucketClose, ChainLink, FrozenLine, KeyedPayout, LineScore
from tests.storage.conftest import HOUR, T0, add_device, add_user, delta, make_referral

IP1, IP2 = "198.51.100.1", "198.51.100.2"
CLOSED = T0 + HOUR + dt.timedelta(minutes=10)


def score(value: int) -> NetworkScore:
    parts = ScoreComponents(availability=value, stability=100, latency=100, ip_quality=100)
    return NetworkScore(value=value, components=parts, computed_at=T0)


def uptime_payout(line: rules.UptimeLine, amount: int) -> rules.Payout:
    return rules.Payout(
        user_id=line.user_id,
        source=EarningSource.UPTIME,
        amount=amount,
        device_id=line.device_id,
        ip=line.ip,
    )


def keyed(revision: int, payouts: list[rules.Payout]) -> list[KeyedPayout]:
    return [KeyedPayout(key=rules.bucket_key(T0, revision, p.slot), payout=p) for p in payouts]


def close(revision: int, seconds: int, closed_at: dt.datetime = CLOSED) -> BucketClose:
    return BucketClose(bucket_start=T0, revision=revision, seconds=seconds, closed_at=closed_at)


async def lines_of(storage) -> dict[str, tuple[rules.UptimeLine, LineScore]]:
    return {line.device_id: (line, how) for line, how in await storage.payouts.bucket_lines(T0)}


async def world(storage):
    user = await add_user(storage)
    scored = await add_device(storage, user, type=DeviceType.DESKTOP, ip=IP1)
    unscored = await add_device(storage, user, type=DeviceType.COMMUNITY, ip=IP2)
    await storage.devices.set_scores({scored.device_id: score(80)})
    await storage.uptime.add_uptime([delta(scored, T0, 3000), delta(unscored, T0, 600)])
    return user, scored, unscored


async def test_lines_are_priced_from_the_device_until_a_revision_freezes_them(storage):
    user, scored, unscored = await world(storage)
    lines = await lines_of(storage)
    assert lines[scored.device_id] == (
        rules.UptimeLine(
            device_id=scored.device_id,
            user_id=user.id,
            ip=IP1,
            seconds=3000,
            device_type=DeviceType.DESKTOP,
            score=80,
        ),
        LineScore.STORED,
    )
    line, how = lines[unscored.device_id]
    assert (line.score, line.device_type, how) == (0, DeviceType.COMMUNITY, LineScore.MISSING)

    # Revision 0 pays and freezes both lines (the unscored one at the score its caller gave).
    first = lines[scored.device_id][0]
    priced = [first, attrs.evolve(line, score=100)]
    await storage.payouts.record_payouts(
        close(0, 3600), keyed(0, [uptime_payout(first, 1_333_333)]), frozen=priced, accrued_at=T0
    )
    assert await storage.payouts.frozen_lines(T0) == sorted(
        (
            FrozenLine(
                bucket_start=T0,
                device_id=p.device_id,
                ip=p.ip,
                device_type=p.device_type,
                score=p.score,
                revision=0,
            )
            for p in priced
        ),
        key=lambda f: (f.device_id, f.ip),
    )

    # Days later the devices score lower and one changed type: the bucket's lines do not.
    await storage.devices.set_scores({scored.device_id: score(10), unscored.device_id: score(5)})
    device = await storage.devices.get_device(scored.device_id)
    await storage.devices.update_device(attrs.evolve(device, type=DeviceType.EXTENSION))
    await storage.uptime.add_uptime([delta(scored, T0, 300)])  # late uptime
    lines = await lines_of(storage)
    assert lines[scored.device_id][0].seconds == 3300
    assert [(lines[d][0].score, lines[d][0].device_type, lines[d][1]) for d in lines] == [
        (80, DeviceType.DESKTOP, LineScore.FROZEN)
        if d == scored.device_id
        else (100, DeviceType.COMMUNITY, LineScore.FROZEN)
        for d in lines
    ]

    # The same device on a new IP in the bucket is a new line, priced from the device.
    await storage.uptime.add_uptime([delta(scored, T0, 60, ip=IP2)])
    fresh = [
        (line.score, line.device_type, how)
        for line, how in await storage.payouts.bucket_lines(T0)
        if line.ip == IP2 and line.device_id == scored.device_id
    ]
    assert fresh == [(10, DeviceType.EXTENSION, LineScore.STORED)]


async def test_a_removed_device_is_priced_as_an_unscored_extension(storage):
    _, scored, _ = await world(storage)
    await storage.devices.delete_device(scored.device_id)
    line, how = (await lines_of(storage))[scored.device_id]
    assert (line.device_type, line.score, how) == (DeviceType.EXTENSION, 0, LineScore.MISSING)


async def test_a_revision_is_written_whole_or_not_at_all(storage):
    user, scored, unscored = await world(storage)
    lines = await lines_of(storage)
    first = lines[scored.device_id][0]
    payouts = keyed(0, [uptime_payout(first, 1_000)])
    await storage.payouts.record_payouts(close(0, 3600), payouts, frozen=[first], accrued_at=T0)
    (entry,) = await storage.payouts.revision_entries(close(0, 3600))
    assert (entry.bucket_start, entry.accrued_at, entry.created_at) == (T0, T0, CLOSED)
    assert (entry.amount, entry.device_id, entry.ip) == (1_000, scored.device_id, IP1)

    other = lines[unscored.device_id][0]
    later = CLOSED + HOUR
    # A line frozen already, a key used already, a revision out of turn: nothing is written.
    attempts = [
        (close(1, 3900, later), keyed(1, [uptime_payout(other, 5)]), [first]),
        (close(1, 3900, later), [*keyed(1, [uptime_payout(other, 5)]), *payouts], []),
        (close(2, 3900, later), keyed(2, [uptime_payout(other, 5)]), [other]),
        (close(0, 3900, later), keyed(0, [uptime_payout(other, 5)]), [other]),
    ]
    for attempt, entries, frozen in attempts:
        with pytest.raises(StorageConflict):
            await storage.payouts.record_payouts(attempt, entries, frozen=frozen, accrued_at=T0)
        assert await storage.payouts.get_close(T0) == close(0, 3600)
        assert await storage.payouts.paid_slots(T0) == {first_slot(first): 1_000}
        assert [f.device_id for f in await storage.payouts.frozen_lines(T0)] == [scored.device_id]
    assert (await storage.earnings.earnings_totals(user_id=user.id)).total == 1_000


async def test_a_revision_paying_an_unknown_user_writes_nothing(storage):
    user = await add_user(storage)
    device = await add_device(storage, user, ip=IP1)
    await storage.uptime.add_uptime([delta(device, T0, 3600, ip=IP1)])
    line, _ = (await lines_of(storage))[device.device_id]
    ghost = rules.Payout(user_id="g" * 21, source=EarningSource.MILESTONE, amount=5)
    payouts = [*keyed(0, [uptime_payout(line, 1_000)]), KeyedPayout(key="m:ghost", payout=ghost)]
    with pytest.raises(IntegrityViolation):
        await storage.payouts.record_payouts(close(0, 3600), payouts, frozen=[line], accrued_at=T0)
    assert await storage.payouts.get_close(T0) is None
    assert await storage.payouts.paid_slots(T0) == {}
    assert await storage.payouts.frozen_lines(T0) == []


def first_slot(line: rules.UptimeLine) -> str:
    return rules.slot(EarningSource.UPTIME, line.user_id, line.device_id, line.ip, None)


async def test_a_rerun_gets_its_revision_and_its_own_milestones_only(storage):
    user, scored, unscored = await world(storage)
    referrer = await add_user(storage)
    lines = await lines_of(storage)
    first, other = lines[scored.device_id][0], lines[unscored.device_id][0]

    def milestone(who: str, role: str, amount: int) -> KeyedPayout:
        return KeyedPayout(
            key=rules.milestone_key(user.id, role),
            payout=rules.Payout(user_id=who, source=EarningSource.MILESTONE, amount=amount),
        )

    await storage.payouts.record_payouts(
        close(0, 3600),
        [*keyed(0, [uptime_payout(first, 700)]), milestone(user.id, "referee", 50)],
        frozen=[first],
        accrued_at=T0,
    )
    await storage.payouts.mark_credited(T0, 0)
    assert await storage.payouts.uncredited() == []
    later = close(1, 4200, CLOSED + HOUR)
    await storage.payouts.record_payouts(
        later,
        [*keyed(1, [uptime_payout(other, 300)]), milestone(referrer.id, "referrer", 25)],
        frozen=[other],
        accrued_at=T0,
    )
    assert await storage.payouts.uncredited() == [later]
    again = await storage.payouts.revision_entries(later)
    assert sorted((e.source, e.user_id, e.amount) for e in again) == sorted(
        [(EarningSource.UPTIME, user.id, 300), (EarningSource.MILESTONE, referrer.id, 25)]
    )
    first_again = await storage.payouts.revision_entries(close(0, 3600))
    assert sorted(e.amount for e in first_again) == [50, 700]
    assert await storage.payouts.paid_slots(T0) == {
        first_slot(first): 700,
        first_slot(other): 300,
        f"milestone:{user.id}": 50,
        f"milestone:{referrer.id}": 25,
    }
    # Marking is idempotent and only for the stored revision.
    await storage.payouts.mark_credited(T0, 0)
    assert (await storage.payouts.get_close(T0)).credited is False
    await storage.payouts.mark_credited(T0, 1)
    await storage.payouts.mark_credited(T0, 1)
    assert (await storage.payouts.get_close(T0)).credited is True


async def test_frozen_lines_of_old_buckets_are_dropped(storage):
    user = await add_user(storage)
    device = await add_device(storage, user, ip=IP1)
    await storage.devices.set_scores({device.device_id: score(60)})
    starts = [T0 + HOUR * i for i in range(3)]
    await storage.uptime.add_uptime([delta(device, start, 100) for start in starts])
    for start in starts:
        ((line, _),) = await storage.payouts.bucket_lines(start)
        await storage.payouts.record_payouts(
            BucketClose(bucket_start=start, revision=0, seconds=100, closed_at=CLOSED),
            [],
            frozen=[line],
            accrued_at=start,
        )
    assert await storage.payouts.drop_frozen_lines(before=starts[2]) == 2
    assert await storage.payouts.drop_frozen_lines(before=starts[2]) == 0
    assert [len(await storage.payouts.frozen_lines(s)) for s in starts] == [0, 0, 1]
    ((_, how),) = await storage.payouts.bucket_lines(starts[0])
    assert how is LineScore.STORED
    closes = await storage.payouts.list_closes(since=starts[1], until=starts[2] + HOUR)
    assert [c.bucket_start for c in closes] == starts[1:]
    assert await storage.payouts.bucket_seconds(since=starts[0], until=starts[2]) == {
        starts[0]: 100,
        starts[1]: 100,
    }


async def test_device_windows_sum_the_window(storage):
    user = await add_user(storage)
    device = await add_device(storage, user, ip=IP1, last_seen=T0 + 3 * HOUR)
    idle = await add_device(
        storage, user, ip=IP2, first_seen=T0 - 50 * HOUR, last_seen=T0 - 48 * HOUR
    )
    await storage.uptime.add_uptime(
        [
            delta(device, T0 - 30 * HOUR, 999),
            delta(device, T0, 100, reconnects=2, rtt_count=2, rtt_sum_ms=300),
            delta(device, T0 + HOUR, 200, reconnects=1),
        ]
    )
    (window,) = await storage.payouts.device_windows(since=T0)
    assert (window.device_id, window.ip, window.first_seen) == (device.device_id, IP1, T0)
    assert (window.stats.seconds, window.stats.reconnects, window.stats.rtt_sum_ms) == (300, 3, 300)
    # Asked by id, a device not seen in the window is there too (with nothing in it).
    asked = await storage.payouts.device_windows(since=T0, device_ids=[idle.device_id, "nope"])
    assert [(w.device_id, w.stats.seconds) for w in asked] == [(idle.device_id, 0)]


async def test_referral_chains_of_users_and_of_a_bucket_and_its_milestones(storage):
    a, b, c, d = [await add_user(storage) for _ in range(4)]
    await storage.referrals.add_referrals(
        [
            make_referral(a, b, 1),
            make_referral(b, c, 1),
            make_referral(a, c, 2),
            make_referral(a, d, 1),
        ]
    )
    await storage.referrals.promote_referees([c.id], ReferralStatus.ACTIVE)
    await storage.referrals.promote_referees([d.id], ReferralStatus.QUALIFIED)
    chains = await storage.payouts.referral_chains([a.id, b.id, c.id, "unknown"])
    assert chains == {
        b.id: (ChainLink(level=1, referrer_id=a.id, status=ReferralStatus.PENDING),),
        c.id: (
            ChainLink(level=1, referrer_id=b.id, status=ReferralStatus.ACTIVE),
            ChainLink(level=2, referrer_id=a.id, status=ReferralStatus.ACTIVE),
        ),
    }
    assert await storage.payouts.referral_chains([]) == {}
    b1 = await add_device(storage, b, ip=IP1)
    b2 = await add_device(storage, b, ip=IP2)
    c1 = await add_device(storage, c, ip=IP2)
    d1 = await add_device(storage, d, ip=IP2)
    a1 = await add_device(storage, a, ip=IP1)
    await storage.uptime.add_uptime(
        [
            delta(b1, T0, 1800),
            delta(b2, T0 + 5 * HOUR, 1800),  # another bucket, another device: counts too
            delta(c1, T0, 3599),
            delta(d1, T0, 7200),  # qualified already
            delta(a1, T0, 9000),  # referred by nobody
            delta(c1, T0 + HOUR, 0, reconnects=1),  # no seconds: not a user of that bucket
        ]
    )
    in_bucket = await storage.payouts.bucket_chains(T0)
    assert in_bucket == await storage.payouts.referral_chains([a.id, b.id, c.id, d.id])
    assert await storage.payouts.bucket_chains(T0 + HOUR) == {}
    assert await storage.payouts.bucket_milestones(T0, seconds=3600) == {b.id}
    assert await storage.payouts.bucket_milestones(T0, seconds=3599) == {b.id, c.id}
    # b's second device is alone in its bucket: b is that bucket's only user.
    assert await storage.payouts.bucket_milestones(T0 + 5 * HOUR, seconds=3600) == {b.id}
    assert await storage.payouts.bucket_milestones(T0 + 9 * HOUR, seconds=1) == set()


async def test_the_crowd_on_an_ip_counts_devices_seen_in_the_window(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    seen = [await add_device(storage, u, ip=IP1, last_seen=T0 + HOUR) for u in (user, other)]
    await add_device(storage, user, ip=IP1, first_seen=T0 - 50 * HOUR, last_seen=T0 - 48 * HOUR)
    await add_device(storage, other, ip=IP2, first_seen=T0 - 50 * HOUR, last_seen=T0 - 30 * HOUR)
    devices = storage.devices
    assert await devices.count_devices_on_ips([IP1, IP2]) == {IP1: 3, IP2: 1}
    since = T0 - 24 * HOUR
    assert await devices.count_devices_on_ips([IP1, IP2], since=since) == {IP1: len(seen)}
