"""The score formula: bounds, monotonicity, the documented examples."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.config import load_config
from grass.domain import scoring
from grass.domain.score import ScoreComponents
from grass.domain.uptime import UptimeStats
from grass.errors import ConfigError

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
    assert scoring.is_datacenter("::ffff:10.1.2.3", networks)  # as the gateway writes it: IPv4
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


params = st.builds(
    scoring.ScoreParams,
    window_seconds=st.integers(60, 7 * 86_400),
    full_availability_permille=st.integers(1, 1000),
    free_reconnects=st.integers(0, 5),
    reconnect_penalty=st.integers(0, 50),
    good_rtt_ms=st.integers(0, 500),
    bad_rtt_ms=st.integers(501, 5000),
    crowd_penalty=st.integers(0, 50),
    weight_availability=st.integers(0, 100),
    weight_stability=st.integers(0, 100),
    weight_latency=st.integers(1, 100),
)


@given(inputs, params, st.integers(0, 10_000), st.integers(0, 5), st.integers(0, 100_000))
def test_any_configured_formula_stays_in_bounds_and_monotone(data, p, more, fewer, less_rtt):
    base = scoring.score(data, AT, p)
    for value in (base.value, *attrs.astuple(base.components)):
        assert 0 <= value <= 100
    s = data.stats
    better = attrs.evolve(
        data,
        stats=UptimeStats(
            seconds=s.seconds + more,
            rtt_count=s.rtt_count,
            rtt_sum_ms=max(0, s.rtt_sum_ms - less_rtt),
            reconnects=max(0, s.reconnects - fewer),
        ),
        devices_on_ip=max(1, data.devices_on_ip - fewer),
    )
    assert scoring.score(better, AT, p).value >= base.value
    assert scoring.admission(base.components, p) >= base.value


@given(inputs)
def test_admission_ignores_availability_and_ip_quality(data):
    parts = scoring.score(data, AT).components
    gate = scoring.admission(parts)
    for availability in (0, 50, 100):
        for quality in (0, 100):
            other = attrs.evolve(parts, availability=availability, ip_quality=quality)
            assert scoring.admission(other) == gate
    # (40 * 100 + 30 * stability + 30 * latency) // 100
    assert gate == (4000 + 30 * parts.stability + 30 * parts.latency) // 100


def test_admission_examples():
    # docs/score.md: a device offline 23 h of the last 24 still gets in; one that reconnected
    # 9 times (stability 20) with a 1 s mean RTT (latency 0) scores 46 at the gate.
    offline = scoring.score(
        scoring.ScoreInput(
            stats=UptimeStats(seconds=3600),
            expected_seconds=86_400,
            datacenter=True,
            devices_on_ip=1,
        ),
        AT,
    )
    assert (offline.components.availability, offline.value) == (4, 0)
    assert scoring.admission(offline.components) == 100
    flapping = scoring.score(
        scoring.ScoreInput(
            stats=UptimeStats(seconds=86_000, rtt_count=2, rtt_sum_ms=2000, reconnects=9),
            expected_seconds=86_400,
            datacenter=False,
            devices_on_ip=1,
        ),
        AT,
    )
    assert (flapping.components.stability, flapping.components.latency) == (20, 0)
    assert scoring.admission(flapping.components) == 46
    assert flapping.value == 46


def test_the_configured_parameters_are_the_documented_defaults():
    config, _ = load_config(environ={})
    assert scoring.score_params(config.score) == scoring.DEFAULT
    with pytest.raises(ConfigError, match="bad_rtt_ms must be above good_rtt_ms"):
        load_config(environ={"GRASS_SCORE_GOOD_RTT_MS": "2000"})
    with pytest.raises(ConfigError, match="weights"):
        load_config(
            environ={
                "GRASS_SCORE_WEIGHT_AVAILABILITY": "0",
                "GRASS_SCORE_WEIGHT_STABILITY": "0",
                "GRASS_SCORE_WEIGHT_LATENCY": "0",
            }
        )
    with pytest.raises(ConfigError, match="full availability"):
        load_config(environ={"GRASS_SCORE_FULL_AVAILABILITY": "1.5"})


def test_other_weights_change_the_value():
    p = scoring.ScoreParams(weight_availability=100, weight_stability=0, weight_latency=0)
    parts = ScoreComponents(availability=50, stability=0, latency=0, ip_quality=100)
    assert (scoring.combine(parts, p), scoring.combine(parts)) == (50, 20)
