"""The score formula: bounds, monotonicity, the documented examples."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.domain import scoring
from grass.domain.uptime import UptimeStats

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

stats = st.builds(
    UptimeStats,
    seconds=st.integers(0, 200_000),
    rtt_count=st.integers(0, 5_000),
    rtt_sum_ms=st.integers(0, 10_000_000),
    reconnects=st.integers(0, 50),
)
inputs = st.builds(
    scoring.ScoreInput,
    stats=stats,
    expected_seconds=st.integers(0, 86_400),
    datacenter=st.booleans(),
    devices_on_ip=st.integers(1, 40),
)


@given(inputs)
def test_every_part_and_the_value_stay_within_0_and_100(data):
    score = scoring.score(data, AT)
    parts = score.components
    for value in (
        score.value,
        parts.availability,
        parts.stability,
        parts.latency,
        parts.ip_quality,
    ):
        assert 0 <= value <= 100


@given(inputs, st.integers(0, 10_000), st.integers(0, 5), st.integers(0, 100_000))
def test_better_behaviour_never_lowers_the_score(data, more_seconds, fewer_reconnects, less_rtt):
    base = scoring.score(data, AT).value
    s = data.stats
    better = scoring.ScoreInput(
        stats=UptimeStats(
            seconds=s.seconds + more_seconds,
            rtt_count=s.rtt_count,
            rtt_sum_ms=max(0, s.rtt_sum_ms - less_rtt),
            reconnects=max(0, s.reconnects - fewer_reconnects),
        ),
        expected_seconds=data.expected_seconds,
        datacenter=False if not data.datacenter else data.datacenter,
        devices_on_ip=max(1, data.devices_on_ip - fewer_reconnects),
    )
    assert scoring.score(better, AT).value >= base


@given(inputs)
def test_leaving_a_datacenter_never_lowers_it_and_a_datacenter_scores_zero(data):
    on = scoring.score(
        scoring.ScoreInput(
            stats=data.stats,
            expected_seconds=data.expected_seconds,
            datacenter=True,
            devices_on_ip=data.devices_on_ip,
        ),
        AT,
    )
    assert on.value == 0
    assert scoring.score(data, AT).value >= on.value


def test_documented_examples():
    # docs/score.md: online all day, one restart, 80 ms RTT, alone on a home IP -> 100.
    perfect = scoring.ScoreInput(
        stats=UptimeStats(seconds=86_000, rtt_count=10, rtt_sum_ms=800, reconnects=1),
        expected_seconds=86_400,
        datacenter=False,
        devices_on_ip=1,
    )
    assert scoring.score(perfect, AT).value == 100
    # Half the day online, 4 reconnects, 575 ms RTT, 3 devices on the IP.
    half = scoring.ScoreInput(
        stats=UptimeStats(seconds=43_200, rtt_count=1, rtt_sum_ms=575, reconnects=4),
        expected_seconds=86_400,
        datacenter=False,
        devices_on_ip=3,
    )
    score = scoring.score(half, AT)
    assert (score.components.availability, score.components.stability) == (53, 70)
    assert (score.components.latency, score.components.ip_quality) == (50, 80)
    # (40*53 + 30*70 + 30*50) * 80 // 10_000 = 5720 * 80 // 10_000 = 45
    assert score.value == 45


def test_cidr_list_is_checked_and_matches_both_families():
    networks = scoring.parse_cidrs(["10.0.0.0/8", "2001:db8::/32"])
    assert scoring.is_datacenter("10.1.2.3", networks)
    assert scoring.is_datacenter("2001:db8::1", networks)
    assert not scoring.is_datacenter("192.168.1.1", networks)
    with pytest.raises(scoring.InvalidCidr, match="not-a-range"):
        scoring.parse_cidrs(["not-a-range"])


def test_an_ip_score_weights_its_devices_by_uptime():
    good = scoring.score(
        scoring.ScoreInput(
            stats=UptimeStats(seconds=3600),
            expected_seconds=3600,
            datacenter=False,
            devices_on_ip=1,
        ),
        AT,
    )
    bad = scoring.score(
        scoring.ScoreInput(
            stats=UptimeStats(seconds=0), expected_seconds=3600, datacenter=False, devices_on_ip=1
        ),
        AT,
    )
    assert (good.value, bad.value) == (100, 60)
    assert scoring.ip_score([(good, 3000), (bad, 1000)], AT).value == 90
