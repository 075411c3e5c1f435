import pytest
import trio

# Two hits per second: the bucket refills slowly enough that the few milliseconds a Redis round
# trip takes never give back a token within a test's burst.
RATE = 2.0
BURST = 5


async def test_burst_then_refusal_with_retry_after(state):
    remaining = []
    for _ in range(BURST):
        decision = await state.limiter.hit("login:1.2.3.4", rate=RATE, burst=BURST)
        assert decision.allowed
        assert decision.retry_after == 0
        remaining.append(decision.remaining)
    assert remaining == [4, 3, 2, 1, 0]

    refused = await state.limiter.hit("login:1.2.3.4", rate=RATE, burst=BURST)
    assert not refused.allowed
    assert refused.remaining == 0
    # One token comes back every 1/RATE seconds; only milliseconds passed since the burst.
    assert 1 / RATE - 0.1 < refused.retry_after <= 1 / RATE + 1e-6


async def test_allowed_again_after_retry_after(state, clock):
    for _ in range(BURST):
        await state.limiter.hit("k", rate=RATE, burst=BURST)
    refused = await state.limiter.hit("k", rate=RATE, burst=BURST)
    assert not refused.allowed
    await trio.sleep(refused.retry_after)
    assert (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed
    assert not (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed


async def test_refills_at_the_rate(state, clock):
    for _ in range(BURST):
        await state.limiter.hit("k", rate=RATE, burst=BURST)
    await trio.sleep(2 / RATE + 0.05)
    assert (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed
    assert (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed
    assert not (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed


async def test_refusals_do_not_consume(state, clock):
    for _ in range(BURST):
        await state.limiter.hit("k", rate=RATE, burst=BURST)
    for _ in range(10):
        assert not (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed
    await trio.sleep(1 / RATE + 0.05)
    assert (await state.limiter.hit("k", rate=RATE, burst=BURST)).allowed


async def test_cost(state):
    first = await state.limiter.hit("k", rate=RATE, burst=BURST, cost=3)
    assert first.allowed
    assert first.remaining == 2
    second = await state.limiter.hit("k", rate=RATE, burst=BURST, cost=3)
    assert not second.allowed
    assert second.remaining == 2
    assert 1 / RATE - 0.1 < second.retry_after <= 1 / RATE + 1e-6
    assert (await state.limiter.hit("k", rate=RATE, burst=BURST, cost=2)).allowed


async def test_keys_are_independent(state):
    for _ in range(BURST):
        await state.limiter.hit("a", rate=RATE, burst=BURST)
    assert not (await state.limiter.hit("a", rate=RATE, burst=BURST)).allowed
    assert (await state.limiter.hit("b", rate=RATE, burst=BURST)).allowed


async def test_concurrent_hits_admit_exactly_burst(state):
    decisions = []

    async def hit():
        decisions.append(await state.limiter.hit("shared", rate=0.001, burst=10))

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(hit)
    assert len(decisions) == 100
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [(0, 5, 1), (-1, 5, 1), (float("inf"), 5, 1), (1, 0, 1), (1, 5, 0), (1, 5, 6)],
)
async def test_invalid_limits_are_refused(state, rate, burst, cost):
    with pytest.raises(ValueError, match="must be"):
        await state.limiter.hit("k", rate=rate, burst=burst, cost=cost)
