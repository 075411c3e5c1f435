"""Property tests of the bucket closer: generated users in referral chains, devices sharing IPs
with scores that change, uptime that arrives on time, late, and too late, and crashes at any
step (between ledger chunks and inside the re-run of an uncredited close included).

For every example:

- a run without crashes pays exactly what a model written here owes, slot by slot: for each
  bucket and IP, each revision pays the IP's pool (computed here in exact rationals, every line
  priced at the score and type of the revision that first paid it) minus what the IP was paid,
  shared by what each slot lacks of its target, nothing taken back; each referral its rate of
  what the referee's uptime was paid; plus each milestone once;
- from the entries alone, independently of that rule: every (bucket, IP) was paid exactly the
  pool of its last revision (late uptime creates no points), and every referral exactly its
  rate of what its referee's uptime entries hold for the bucket;
- a run killed at the generated steps and restarted each time ends with exactly the same
  entries, statuses and ledger, however the crashes fell;
- in both, the ledger holds exactly the store's entries, and no key is paid twice.

On memory with many examples; on PostgreSQL with a few (each example empties the schema).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from fractions import Fraction

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grass.config import Config
from grass.domain import payouts as rules
from grass.domain.devices import DeviceType
from grass.ids import new_uuid, short_id
from grass.ledger.abc import Ledger
from grass.ledger.memory import open_memory_ledger
from grass.services.closer import BucketCloser
from grass.storage.abc import Storage
from grass.storage.memory import MemoryStorage
from tests.engine.helpers import Clock, build, engine_config
from tests.engine.test_closer import score
from tests.storage.conftest import BACKENDS, T0, delta, make_device, make_referral, make_user

HOUR = dt.timedelta(hours=1)
IPS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
TICK = dt.timedelta(minutes=55)  # the tick of round r: at T0 + r h + 55 min
RESTART = dt.timedelta(minutes=10)  # a killed closer runs again 10 minutes later
# Corrections reach the 3 one-hour buckets before the tick's (older late uptime is not paid),
# at the tick and at its restart; both see the same buckets due (the next one is due at
# T0 + (r + 1) h + 10 min). The restart is in the next hour, so in the next epoch when that
# hour is even: the re-run must hand over the same credits.
WINDOW = dt.timedelta(hours=3, minutes=30)
CHUNK = 2  # ledger chunks of two credits: every revision hands over several


class Crash(Exception):
    pass


@attrs.frozen
class Round:
    #: (device, how many buckets before the last ended one (-1: the open one), seconds)
    uptime: tuple[tuple[int, int, int], ...]
    rescore: tuple[tuple[int, int], ...]


@attrs.frozen
class Scenario:
    referrers: tuple[int | None, ...]  # per user: the index of its referrer (an earlier user)
    devices: tuple[tuple[int, DeviceType, int, int], ...]  # user, type, IP, first score
    rounds: tuple[Round, ...]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    users = draw(st.integers(1, 5))
    referrers = tuple(
        draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None for i in range(users)
    )
    devices = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, users - 1),
                    st.sampled_from(list(DeviceType)),
                    st.integers(0, len(IPS) - 1),
                    st.integers(0, 100),
                ),
                min_size=1,
                max_size=6,
            )
        )
    )
    n = len(devices) - 1
    rounds = draw(
        st.lists(
            st.builds(
                Round,
                uptime=st.lists(
                    st.tuples(st.integers(0, n), st.integers(-1, 4), st.integers(1, 3600)),
                    max_size=6,
                ).map(tuple),
                rescore=st.lists(st.tuples(st.integers(0, n), st.integers(0, 100)), max_size=2).map(
                    tuple
                ),
            ),
            min_size=1,
            max_size=7,
        )
    )
    return Scenario(referrers=referrers, devices=devices, rounds=tuple(rounds))


def scenario_config() -> Config:
    base = engine_config(
        milestone_hours=1,
        epoch_seconds=2 * 3600,  # epochs settle during the run: late credits go to later ones
        epoch_genesis=int(T0.timestamp()),
    )
    # One tick an hour (the rounds'): each tick's sweep covers the window's older buckets.
    closer = attrs.evolve(base.closer, correction_window=WINDOW.total_seconds(), interval=3600.0)
    return attrs.evolve(base, closer=closer)


@attrs.frozen
class Ids:
    users: tuple[str, ...]
    devices: tuple[str, ...]


def chains_of(s: Scenario, ids: Ids) -> dict[str, list[tuple[int, str]]]:
    chains: dict[str, list[tuple[int, str]]] = {}
    for i in range(len(s.referrers)):
        level, up = 1, s.referrers[i]
        while up is not None and level <= 3:
            chains.setdefault(ids.users[i], []).append((level, ids.users[up]))
            level, up = level + 1, s.referrers[up]
    return chains


def bucket_of(round_number: int, back: int) -> int:
    """Round r ticks in bucket r, after bucket r - 1 ended; ``back`` counts buckets before
    that one."""
    return max(0, round_number - 1 - back)


def rounds_with_tail(s: Scenario) -> list[Round]:
    """The generated rounds, then quiet ones until every bucket and epoch is closed."""
    return [*s.rounds, *[Round(uptime=(), rescore=())] * 4]


def pool_of(lines: list[rules.UptimeLine], rates: rules.Rates) -> int:
    """One IP's pool, in exact rationals (docs/score.md), not by the closer's integer path."""
    raw = sum(
        (
            Fraction(line.seconds, 3600)
            * Fraction(line.score, 100)
            * rates.multipliers[line.device_type]
            * rates.base_rate
            for line in lines
        ),
        Fraction(0),
    )
    return math.floor(raw)


def pay_ip(paid: dict[str, int], bucket: int, targets: list[rules.Payout], pool: int) -> None:
    """A revision's uptime on one IP: the pool minus what the IP was paid, shared in proportion
    to what each slot lacks of its target (exact shares, floors, the units left over to the
    largest fractions, ties to the lower device id); nothing is ever taken back."""
    slots = sorted(targets, key=lambda p: p.device_id or "")
    was = [paid.get(f"{bucket}:{p.slot}", 0) for p in slots]
    left = pool - sum(was)
    if left <= 0:
        return
    lacking = [max(0, p.amount - w) for p, w in zip(slots, was, strict=True)]
    shares = [Fraction(left * lack, sum(lacking)) for lack in lacking]
    parts = [math.floor(share) for share in shares]
    by_fraction = sorted(range(len(slots)), key=lambda i: (parts[i] - shares[i], i))
    for i in by_fraction[: left - sum(parts)]:
        parts[i] += 1
    for p, w, part in zip(slots, was, parts, strict=True):
        assert w + part <= max(w, p.amount)  # never beyond a slot's target
        if part:
            paid[f"{bucket}:{p.slot}"] = w + part
    assert sum(paid.get(f"{bucket}:{p.slot}", 0) for p in slots) == pool


def model(
    s: Scenario, ids: Ids, config: Config
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """What the closer owes, by (bucket, slot) and milestone key, without the closer; and the
    pool of each (bucket, IP) as of the last revision that paid it."""
    rates = rules.rates_of(config.rates)
    chains = chains_of(s, ids)
    owner = {ids.devices[d]: ids.users[u] for d, (u, *_) in enumerate(s.devices)}
    kind = {ids.devices[d]: t for d, (_, t, _, _) in enumerate(s.devices)}
    ip_of = {ids.devices[d]: IPS[ip] for d, (_, _, ip, _) in enumerate(s.devices)}
    current = {ids.devices[d]: first for d, (*_, first) in enumerate(s.devices)}
    seconds: dict[tuple[int, str], int] = {}  # (bucket, device) -> seconds
    frozen: dict[tuple[int, str], tuple[int, DeviceType]] = {}
    closed: dict[int, int] = {}  # bucket -> seconds paid for
    paid: dict[str, int] = {}
    pools: dict[tuple[int, str], int] = {}
    written: dict[str, int] = {}  # user -> all uptime written so far
    qualified: set[str] = set()
    for r, rnd in enumerate(rounds_with_tail(s), start=1):
        for d, back, secs in rnd.uptime:
            device = ids.devices[d]
            key = (bucket_of(r, back), device)
            seconds[key] = seconds.get(key, 0) + secs
            written[owner[device]] = written.get(owner[device], 0) + secs
        for d, value in rnd.rescore:
            current[ids.devices[d]] = value
        # The tick at T0 + r h + 55 min: buckets r - 1 and the two before are corrected.
        for bucket in sorted({b for b, _ in seconds}):
            if not r - 3 <= bucket <= r - 1:
                continue
            total = sum(v for (b, _), v in seconds.items() if b == bucket)
            if bucket in closed and total <= closed[bucket]:
                continue
            lines = []
            for (b, device), secs in sorted(seconds.items()):
                if b != bucket:
                    continue
                price = frozen.setdefault((b, device), (current[device], kind[device]))
                lines.append(
                    rules.UptimeLine(
                        device_id=device,
                        user_id=owner[device],
                        ip=ip_of[device],
                        seconds=secs,
                        device_type=price[1],
                        score=price[0],
                    )
                )
            uptime = rules.uptime_payouts(lines, rates)
            for ip in sorted({line.ip for line in lines}):
                on_ip = [p for p in uptime if p.ip == ip]
                pool = pool_of([line for line in lines if line.ip == ip], rates)
                assert sum(p.amount for p in on_ip) == pool
                pools[(bucket, ip)] = pool
                pay_ip(paid, bucket, on_ip, pool)
            points: dict[str, int] = {}
            for p in uptime:
                points[p.user_id] = points.get(p.user_id, 0) + paid.get(f"{bucket}:{p.slot}", 0)
            users_chains = {u: chains[u] for u in points if u in chains}
            for u, chain in users_chains.items():
                for level, referrer in chain:
                    slot = f"{bucket}:r:{referrer}:{u}"
                    amount = math.floor(points[u] * rates.referral[level - 1])
                    assert amount >= paid.get(slot, 0)  # what a referee is paid never falls
                    paid[slot] = amount
            for u, chain in sorted(users_chains.items()):
                if u not in qualified and written.get(u, 0) >= rates.milestone_seconds:
                    qualified.add(u)
                    paid[rules.milestone_key(u, "referee")] = rates.milestone_referee_bonus
                    paid[rules.milestone_key(u, "referrer")] = rates.milestone_referrer_bonus
                    assert chain[0][0] == 1
            closed[bucket] = total
    return {k: v for k, v in paid.items() if v}, pools


async def seed(storage: Storage, s: Scenario, ids: Ids) -> None:
    for user_id in ids.users:
        await storage.users.create_user(make_user(id=user_id))
    for i, up in enumerate(s.referrers):
        level, referrer = 1, up
        while referrer is not None and level <= 3:
            referee_user = make_user(id=ids.users[i])
            await storage.referrals.add_referrals(
                [make_referral(make_user(id=ids.users[referrer]), referee_user, level)]
            )
            level, referrer = level + 1, s.referrers[referrer]
    for d, (u, kind, ip, first) in enumerate(s.devices):
        device = make_device(ids.users[u], device_id=ids.devices[d], type=kind, ip=IPS[ip])
        await storage.devices.create_device(device)
        await storage.devices.set_scores({device.device_id: score(first)})


async def play(
    storage: Storage, ledger: Ledger, s: Scenario, ids: Ids, crashes: frozenset[int]
) -> int:
    """Every round: uptime, new scores, then a tick; a crash restarts the closer and the tick.
    Returns how many steps the closer took (crash points are counted among them)."""
    config = scenario_config()
    steps = 0

    async def hook(name: str, _: dt.datetime) -> None:
        nonlocal steps
        steps += 1
        if steps in crashes:
            raise Crash(name)

    clock = Clock(T0)

    def closer() -> BucketCloser:
        engine = build(storage, ledger, config, clock, step_hook=hook)
        engine.closer._ledger_chunk = CHUNK
        return engine.closer

    running = closer()  # one process, until it is killed

    for r, rnd in enumerate(rounds_with_tail(s), start=1):
        devices = [
            make_device(ids.users[s.devices[d][0]], device_id=ids.devices[d])
            for d, *_ in rnd.uptime
        ]
        await storage.uptime.add_uptime(
            [
                delta(device, T0 + HOUR * bucket_of(r, back), secs, ip=IPS[s.devices[d][2]])
                for device, (d, back, secs) in zip(devices, rnd.uptime, strict=True)
            ]
        )
        for d, value in rnd.rescore:
            await storage.devices.set_scores({ids.devices[d]: score(value)})
        now = T0 + HOUR * r + TICK
        clock.now = now
        while True:
            try:
                await running.tick()
                break
            except Crash:  # killed: a new process runs the tick again, a little later
                clock.now = now + RESTART
                running = closer()
    return steps


async def outcome(storage: Storage, ledger: Ledger, ids: Ids) -> dict[str, object]:
    entries: dict[str, tuple[str, int]] = {}
    credits: dict[str, tuple[str, int]] = {}
    keys: list[str] = []
    for user in ids.users:
        cursor = None
        while True:
            page = await storage.earnings.list_earnings(user, cursor=cursor, limit=500)
            for e in page.items:
                keys.append(e.idempotency_key)
                entries[e.idempotency_key] = (e.user_id, e.amount)
            if (cursor := page.next_cursor) is None:
                break
        ledger_cursor = None
        while True:
            history = await ledger.history(user, ledger_cursor, 1000)
            for c in history.items:
                assert c.key not in credits, "a credit recorded twice"
                credits[c.key] = (c.user_id, c.amount)
            if (ledger_cursor := history.next_cursor) is None:
                break
    assert len(keys) == len(set(keys)), "an entry paid twice"
    assert credits == entries, "the ledger holds exactly the store's entries"
    assert all(amount > 0 for _, amount in entries.values())
    chains = await storage.referrals.referrers_of(list(ids.users))
    statuses = {u: [r.status for r in links] for u, links in chains.items()}
    assert await storage.payouts.uncredited() == []
    return {"entries": entries, "statuses": statuses}


def by_slot(entries: dict[str, tuple[str, int]], ids: Ids) -> dict[str, int]:
    """Entries summed the way the model keys them: (bucket index, slot) or milestone key."""
    out: dict[str, int] = {}
    for key, (_, amount) in entries.items():
        if key.startswith("bucket:"):
            _, stamp, _revision, slot = key.split(":", 3)
            start = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
            key = f"{(start - T0) // HOUR}:{slot}"
        out[key] = out.get(key, 0) + amount
    return out


def conserved(
    paid: dict[str, int],
    pools: dict[tuple[int, str], int],
    s: Scenario,
    ids: Ids,
    config: Config,
) -> None:
    """From the entries alone: each (bucket, IP) was paid its pool exactly, never more (late
    uptime creates no points), and each referrer exactly its rate of what its referee's uptime
    was paid in the bucket."""
    rates = rules.rates_of(config.rates)
    chains = chains_of(s, ids)
    owner = {ids.devices[d]: ids.users[u] for d, (u, *_) in enumerate(s.devices)}
    by_ip: dict[tuple[int, str], int] = {}
    by_user: dict[tuple[int, str], int] = {}
    referrals: dict[tuple[int, str, str], int] = {}
    for key, amount in paid.items():
        bucket, kind, rest = key.split(":", 2)
        if kind == "u":
            device, ip = rest.split(":", 1)
            by_ip[(int(bucket), ip)] = by_ip.get((int(bucket), ip), 0) + amount
            user = owner[device]
            by_user[(int(bucket), user)] = by_user.get((int(bucket), user), 0) + amount
        elif kind == "r":
            referrer, referee = rest.split(":", 1)
            referrals[(int(bucket), referrer, referee)] = amount
    assert by_ip == {k: v for k, v in pools.items() if v}
    want: dict[tuple[int, str, str], int] = {}
    for (bucket, user), points in by_user.items():
        for level, referrer in chains.get(user, []):
            amount = math.floor(points * rates.referral[level - 1])
            if amount:
                want[(bucket, referrer, user)] = amount
    assert referrals == want


Opener = Callable[[], AbstractAsyncContextManager[Storage]]


async def check(open_storage: Opener, s: Scenario, crashes: frozenset[int]) -> None:
    ids = Ids(
        users=tuple(short_id() for _ in s.referrers),
        devices=tuple(new_uuid() for _ in s.devices),
    )
    async with open_storage() as storage, open_memory_ledger() as ledger:
        await seed(storage, s, ids)
        steps = await play(storage, ledger, s, ids, frozenset())
        clean = await outcome(storage, ledger, ids)
    paid = by_slot(clean["entries"], ids)  # type: ignore[arg-type]
    owed, pools = model(s, ids, scenario_config())
    conserved(paid, pools, s, ids, scenario_config())
    assert paid == owed
    async with open_storage() as storage, open_memory_ledger() as ledger:
        await seed(storage, s, ids)
        # Crash points beyond the clean run's steps are shifted into it.
        await play(storage, ledger, s, ids, frozenset(c % (steps + 1) for c in crashes))
        crashed = await outcome(storage, ledger, ids)
    assert crashed == clean


crash_points = st.frozensets(st.integers(1, 200), max_size=6)
PROPERTY = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@asynccontextmanager
async def _memory() -> AsyncIterator[Storage]:
    yield MemoryStorage()


@settings(max_examples=300, **PROPERTY)  # type: ignore[arg-type]
@given(s=scenarios(), crashes=crash_points)
async def test_any_run_with_any_crashes_pays_exactly_what_is_owed_on_memory(s, crashes):
    await check(_memory, s, crashes)


@pytest.fixture
def open_postgres(request: pytest.FixtureRequest) -> Opener:
    return lambda: BACKENDS["postgres"](request)


@settings(max_examples=12, **PROPERTY)  # type: ignore[arg-type]
@given(s=scenarios(), crashes=crash_points)
async def test_any_run_with_any_crashes_pays_exactly_what_is_owed_on_postgres(
    open_postgres, s, crashes
):
    await check(open_postgres, s, crashes)
