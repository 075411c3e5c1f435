"""The GCRA core (shared by the in-process limiter; the Lua script computes the same)."""

import math

from hypothesis import given
from hypothesis import strategies as st

from grass.storage.shared_state import gcra


def run(times, *, rate, burst, cost=1):
    tat = None
    decisions = []
    for now in times:
        new_tat, decision = gcra(tat, now, rate=rate, burst=burst, cost=cost)
        if new_tat is not None:
            tat = new_tat
        decisions.append(decision)
    return decisions


def test_burst_then_one_per_interval():
    decisions = run([0, 0, 0, 0, 0.49, 0.5, 0.5], rate=2, burst=3)
    assert [d.allowed for d in decisions] == [True, True, True, False, False, True, False]
    assert decisions[3].retry_after == 0.5
    assert math.isclose(decisions[4].retry_after, 0.01)
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0, 0, 0]


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=60),
    rate=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=10),
)
def test_never_admits_more_than_burst_plus_refill(gaps, rate, burst):
    times = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    decisions = run(times, rate=rate, burst=burst)
    allowed = [t for t, d in zip(times, decisions, strict=True) if d.allowed]
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + (allowed[j] - start) * rate + 1e-6


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=60),
    rate=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=10),
)
def test_a_refused_hit_is_allowed_after_retry_after(gaps, rate, burst):
    tat = None
    now = 0.0
    for gap in gaps:
        now += gap
        new_tat, decision = gcra(tat, now, rate=rate, burst=burst, cost=1)
        if new_tat is not None:
            tat = new_tat
            continue
        assert decision.retry_after > 0
        later, retried = gcra(tat, now + decision.retry_after, rate=rate, burst=burst, cost=1)
        assert retried.allowed
        assert later is not None
