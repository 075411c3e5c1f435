"""The bucket closer on every backend: amounts by hand, re-runs, crashes between steps, late
uptime, milestones, the job lock."""

from __future__ import annotations

import datetime as dt

import pytest

from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningSource
from grass.domain.referrals import ReferralStatus
from grass.domain.score import NetworkScore, ScoreComponents
from grass.errors import StorageUnavailable
from grass.ledger.memory import open_memory_ledger
from grass.services.closer import STEPS
from tests.engine.helpers import Clock, build, engine, engine_config, job_lock
from tests.storage.conftest import T0, add_device, add_user, delta, make_referral

CLOSE_AT = T0 + dt.timedelta(hours=1, minutes=10)  # bucket T0 ended, plus the 600 s delay
IP1, IP2 = "198.51.100.1", "198.51.100.2"


def score(value: int) -> NetworkScore:
    parts = ScoreComponents(availability=value, stability=value, latency=value, ip_quality=100)
    return NetworkScore(value=value, components=parts, computed_at=T0)


async def world(storage):
    """A <- B <- C (C registered with B's code), four devices on two IPs, one bucket."""
    a, b, c = [await add_user(storage) for _ in range(3)]
    await storage.referrals.add_referrals(
        [make_referral(a, b, 1), make_referral(b, c, 1), make_referral(a, c, 2)]
    )
    a1 = await add_device(storage, a, type=DeviceType.DESKTOP, ip=IP1)
    a2 = await add_device(storage, a, type=DeviceType.EXTENSION, ip=IP1)
    b1 = await add_device(storage, b, type=DeviceType.COMMUNITY, ip=IP2)
    c1 = await add_device(storage, c, type=DeviceType.EXTENSION, ip=IP2)
    await storage.devices.set_scores(
        {a1.device_id: score(80), a2.device_id: score(50), b1.device_id: score(100)}
        | {c1.device_id: score(90)}
    )
    await storage.uptime.add_uptime(
        [delta(a1, T0, 3600), delta(a2, T0, 1800), delta(b1, T0, 3600), delta(c1, T0, 1200)]
    )
    return (a, b, c), (a1, a2, b1, c1)


async def totals(storage, users):
    return [(await storage.earnings.earnings_totals(user_id=u.id)).total for u in users]


async def balances(ledger, users):
    return [(await ledger.balance(u.id)).total for u in users]


# By hand (docs/score.md, grass.domain.payouts):
#   IP1 pool = (3600*80*2.0 + 1800*50*1.0) / 360000 points = 1.85 -> a1 1_233_333, a2 616_667
#   IP2 pool = (3600*100*1.25 + 1200*90*1.0) / 360000 = 1.55 -> b1 1_162_500, c1 387_500
#   A: 1_850_000 + 20% of B's 1_162_500 (232_500) + 10% of C's 387_500 (38_750) = 2_121_250
#   B: 1_162_500 + 20% of C's 387_500 (77_500) = 1_240_000;  C: 387_500
EXPECTED = [2_121_250, 1_240_000, 387_500]


async def test_a_bucket_pays_shares_and_referrals_by_hand_and_a_rerun_pays_nothing(storage):
    users, devices = await world(storage)
    async with engine(storage, engine_config(), CLOSE_AT) as e:
        assert await e.closer.tick()
        assert await totals(storage, users) == EXPECTED
        assert await balances(e.ledger, users) == EXPECTED
        by_device = await storage.earnings.earnings_by_device(users[0].id)
        assert by_device == {devices[0].device_id: 1_233_333, devices[1].device_id: 616_667}
        close = await storage.payouts.get_close(T0)
        assert close is not None
        assert close.credited
        assert close.seconds == 10_200
        # Re-runs, from this engine or a fresh one, pay nothing more.
        assert await e.closer.tick()
        again = build(storage, e.ledger, engine_config(), Clock(CLOSE_AT))
        await again.closer.tick()
        assert await totals(storage, users) == EXPECTED
        assert await balances(e.ledger, users) == EXPECTED
        # Statuses: B and C earned uptime, so they are active.
        chains = await storage.referrals.referrers_of([users[1].id, users[2].id])
        assert {r.status for links in chains.values() for r in links} == {ReferralStatus.ACTIVE}


async def test_a_bucket_is_not_closed_before_its_delay(storage):
    users, _ = await world(storage)
    async with engine(storage, engine_config(), CLOSE_AT - dt.timedelta(seconds=1)) as e:
        await e.closer.tick()
        assert await totals(storage, users) == [0, 0, 0]


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
async def test_a_crash_between_any_two_steps_never_pays_twice_or_skips(storage, step):
    users, _ = await world(storage)
    config = engine_config()

    async def crash(name, bucket):
        if name == step:
            raise Crash(name)

    async with open_memory_ledger() as ledger:
        first = build(storage, ledger, config, Clock(CLOSE_AT), step_hook=crash)
        with pytest.raises(Crash):
            await first.closer.tick()
        restarted = build(storage, ledger, config, Clock(CLOSE_AT + dt.timedelta(minutes=1)))
        await restarted.closer.tick()
        assert await totals(storage, users) == EXPECTED
        assert await balances(ledger, users) == EXPECTED
        assert [c.credited for c in await storage.payouts.uncredited()] == []


class Told:
    """What the closer announces (grass.services.live.LiveEvents in the server)."""

    def __init__(self) -> None:
        self.credited: list[tuple[int, dict[str, int]]] = []

    async def earnings_credited(self, epoch, amounts):
        self.credited.append((epoch, dict(amounts)))

    def by_user(self, users) -> list[list[int]]:
        return [[a[u.id] for _, a in self.credited if u.id in a] for u in users]


async def test_each_user_is_told_what_a_close_credited(storage):
    users, _ = await world(storage)
    told = Told()
    async with open_memory_ledger() as ledger:
        e = build(storage, ledger, engine_config(), Clock(CLOSE_AT), events=told)
        closer = e.closer
        await closer.tick()
        assert told.by_user(users) == [[amount] for amount in EXPECTED]
        await closer.tick()  # nothing more to pay: nothing more to tell
        assert told.by_user(users) == [[amount] for amount in EXPECTED]
        (epoch, _), *_ = told.credited
        assert (await ledger.balance(users[0].id)).total == EXPECTED[0]
        assert epoch == e.epochs.number_at(T0)


async def test_a_rerun_after_a_crash_announces_nothing_again(storage):
    users, _ = await world(storage)
    config = engine_config()

    async def crash(name, bucket):
        if name == "ledger":  # credited on the ledger, the close not marked yet
            raise Crash(name)

    told = Told()
    async with open_memory_ledger() as ledger:
        first = build(storage, ledger, config, Clock(CLOSE_AT), step_hook=crash, events=told)
        with pytest.raises(Crash):
            await first.closer.tick()
        restarted = build(storage, ledger, config, Clock(CLOSE_AT), events=told)
        await restarted.closer.tick()
        assert await balances(ledger, users) == EXPECTED
        assert told.credited == []  # at most once; dashboards refetch their totals


async def test_late_uptime_is_paid_by_a_correction_and_nothing_is_taken_back(storage):
    users, devices = await world(storage)
    async with engine(storage, engine_config(), CLOSE_AT) as e:
        await e.closer.tick()
        await storage.uptime.add_uptime([delta(devices[3], T0, 1200)])  # C's c1, late
        e.clock.now += dt.timedelta(minutes=5)
        await e.closer.tick()
        # IP2 pool = (3600*100*1.25 + 2400*90) / 360000 = 1.85 -> b1 1_110_000, c1 740_000.
        # b1 was paid 1_162_500 already and keeps it, so IP2 is owed only the rest of its pool:
        # 1_850_000 - (1_162_500 + 387_500) = 300_000, all to c1 (the one slot below its
        # target): C is paid 687_500 in all, IP2 1_850_000, its pool exactly. B gets 20% of
        # C's 687_500 (137_500) -> 60_000 more; A gets 10% (68_750) -> 30_000 more; B's uptime
        # did not change: A's 20% of it neither.
        want = [2_121_250 + 30_000, 1_240_000 + 60_000, 687_500]
        assert await totals(storage, users) == want
        assert await balances(e.ledger, users) == want
        b_ip2 = await storage.earnings.earnings_by_device(users[1].id)
        c_ip2 = await storage.earnings.earnings_by_device(users[2].id)
        assert b_ip2[devices[2].device_id] + c_ip2[devices[3].device_id] == 1_850_000
        close = await storage.payouts.get_close(T0)
        assert close is not None
        assert (close.revision, close.seconds) == (1, 11_400)
        await e.closer.tick()
        assert await totals(storage, users) == want


async def test_a_milestone_pays_once_and_qualifies_the_referee(storage):
    users, devices = await world(storage)
    config = engine_config(milestone_hours=1)
    async with engine(storage, config, CLOSE_AT) as e:
        await e.closer.tick()
        # B reached 1 h (3600 s) in this bucket: 5 000 to B, 2 500 to A. C (1200 s) did not.
        bonus = 5_000_000_000, 2_500_000_000
        assert await totals(storage, users) == [
            EXPECTED[0] + bonus[1],
            EXPECTED[1] + bonus[0],
            EXPECTED[2],
        ]
        await storage.uptime.add_uptime([delta(devices[2], T0 + dt.timedelta(hours=1), 3600)])
        e.clock.now += dt.timedelta(hours=1)
        await e.closer.tick()
        milestones = await storage.earnings.list_earnings(
            users[1].id, source=EarningSource.MILESTONE
        )
        assert [m.amount for m in milestones.items] == [bonus[0]]
        chain = (await storage.referrals.referrers_of([users[1].id]))[users[1].id]
        assert [r.status for r in chain] == [ReferralStatus.QUALIFIED]


async def test_one_instance_at_a_time(storage):
    lock = job_lock(storage)
    async with lock.hold("job") as first:
        other = job_lock(storage)
        async with other.hold("job") as second:
            assert (first, second) == (True, False)
        async with other.hold("another job") as third:
            assert third
    async with job_lock(storage).hold("job") as again:
        assert again


@pytest.mark.parametrize("scored", [True, False])
async def test_a_device_removed_before_its_bucket_closes_is_not_paid_more_than_if_kept(
    storage, scored
):
    user = await add_user(storage)
    kept = await add_device(storage, user, ip=IP1)
    removed = await add_device(storage, user, type=DeviceType.DESKTOP, ip=IP2)
    if scored:
        await storage.devices.set_scores({kept.device_id: score(0), removed.device_id: score(0)})
    await storage.uptime.add_uptime([delta(kept, T0, 3600), delta(removed, T0, 3600)])
    await storage.devices.set_scores({kept.device_id: score(0)})  # kept at 0: paid 0
    await storage.devices.delete_device(removed.device_id)
    async with engine(storage, engine_config(), CLOSE_AT) as e:
        await e.closer.tick()
        assert await totals(storage, [user]) == [0]
        assert (await e.ledger.balance(user.id)).total == 0
        # Frozen at score 0 and the lowest multiplier: a correction prices it the same.
        frozen = {
            f.device_id: (f.score, f.device_type) for f in await storage.payouts.frozen_lines(T0)
        }
        assert frozen == {
            kept.device_id: (0, DeviceType.EXTENSION),
            removed.device_id: (0, DeviceType.EXTENSION),
        }


class ChainsDown:
    """The storage, with the referral chains' read failing (one of the closer's three
    parallel reads of a bucket)."""

    def __init__(self, storage) -> None:
        self._storage = storage
        self.payouts = PayoutsWithChainsDown(storage.payouts)

    def __getattr__(self, name):
        return getattr(self._storage, name)


class PayoutsWithChainsDown:
    def __init__(self, payouts) -> None:
        self._payouts = payouts

    def __getattr__(self, name):
        return getattr(self._payouts, name)

    async def bucket_chains(self, bucket_start):
        raise StorageUnavailable("the database does not answer")


async def test_a_storage_error_in_one_parallel_read_keeps_its_type(storage):
    users, _ = await world(storage)
    async with open_memory_ledger() as ledger:
        e = build(ChainsDown(storage), ledger, engine_config(), Clock(CLOSE_AT))
        with pytest.raises(StorageUnavailable, match="does not answer"):
            await e.closer.tick()
        assert await totals(storage, users) == [0, 0, 0]
        # Back up: the next tick pays the bucket.
        await build(storage, ledger, engine_config(), Clock(CLOSE_AT)).closer.tick()
        assert await totals(storage, users) == EXPECTED
