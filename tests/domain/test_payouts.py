"""Payout rules: conservation of each IP's pool, exact referral sums, top-ups."""

from __future__ import annotations

import uuid
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from grass import ids
from grass.domain import payouts as rules
from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningSource

RATES = rules.Rates(
    base_rate=1_000_000,
    multipliers={
        DeviceType.EXTENSION: Fraction(1),
        DeviceType.COMMUNITY: Fraction(5, 4),
        DeviceType.DESKTOP: Fraction(2),
        DeviceType.ANDROID: Fraction(1),
    },
    referral=(Fraction(1, 5), Fraction(1, 10), Fraction(1, 20)),
    milestone_seconds=100 * 3600,
    milestone_referee_bonus=5_000_000_000,
    milestone_referrer_bonus=2_500_000_000,
)

lines = st.lists(
    st.builds(
        rules.UptimeLine,
        device_id=st.uuids().map(str),
        user_id=st.sampled_from(["u1", "u2", "u3", "u4"]),
        ip=st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        seconds=st.integers(0, 3600),
        device_type=st.sampled_from(list(DeviceType)),
        score=st.integers(0, 100),
    ),
    max_size=30,
    unique_by=lambda line: line.device_id,
)


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**6), min_size=1, max_size=50))
def test_largest_remainder_is_exact_and_fair(total, weights):
    if sum(weights) == 0:
        total = 0
    parts = rules.largest_remainder(total, weights)
    assert sum(parts) == total
    whole = sum(weights) or 1
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, whole)
        assert exact - 1 < part < exact + 1


@given(lines)
def test_every_ip_pool_is_paid_exactly_by_uptime(bucket):
    payouts = rules.uptime_payouts(bucket, RATES)
    for ip in {line.ip for line in bucket}:
        group = [line for line in bucket if line.ip == ip and line.seconds]
        raw = sum(
            (
                Fraction(line.seconds * line.score * RATES.base_rate, 360_000)
                * RATES.multipliers[line.device_type]
                for line in group
            ),
            Fraction(0),
        )
        paid = [p for p in payouts if p.ip == ip]
        assert sum(p.amount for p in paid) == int(raw)
        assert len(paid) == len(group)
    # Deterministic: the same rows in another order pay the same.
    assert sorted(rules.uptime_payouts(list(reversed(bucket)), RATES), key=str) == sorted(
        payouts, key=str
    )


@given(st.dictionaries(st.sampled_from(["c", "d", "e"]), st.integers(0, 10**10)))
def test_referral_credits_are_exact_fractions_of_the_referee_points(points):
    chains = {u: [(1, "b"), (2, "a"), (3, "z")] for u in points}
    payouts = rules.referral_payouts(points, chains, RATES)
    for referee, amount in points.items():
        got = {p.referral_level: p.amount for p in payouts if p.referee_id == referee}
        assert got == {1: amount // 5, 2: amount // 10, 3: amount // 20}


def test_top_up_pays_only_what_is_missing_and_never_takes_back():
    device = str(uuid.uuid4())
    target = rules.Payout(
        user_id="u1", source=EarningSource.UPTIME, amount=100, device_id=device, ip="10.0.0.1"
    )
    assert rules.top_up([target], {}) == [target]
    assert [p.amount for p in rules.top_up([target], {target.slot: 60})] == [40]
    assert rules.top_up([target], {target.slot: 100}) == []
    assert rules.top_up([target], {target.slot: 150}) == []


def test_milestones_need_a_referrer_and_name_one_key_each():
    got = rules.milestone_payouts(["b", "lonely"], {"b": "a"}, RATES)
    assert [(key, p.user_id, p.amount) for key, p in got] == [
        ("milestone:referee:b", "b", 5_000_000_000),
        ("milestone:referrer:b", "a", 2_500_000_000),
    ]


def test_bulk_entry_ids_are_short_ids_and_distinct():
    made = ids.short_ids(20_000)
    assert len(set(made)) == 20_000
    assert all(ids.is_short_id(i) for i in made)
    # Every symbol of the alphabet turns up (the bytes are masked to 6 bits, not cut).
    assert set("".join(made)) == set(ids.ALPHABET)
    assert ids.short_ids(0) == []
