import pytest
import trio

from grass.storage.shared_state import SubscriptionOverflow, user_channel

from .conftest import SUBSCRIBER_BUFFER

# Redis delivers asynchronously: bound every wait for a message.
WAIT = 5


async def receive(subscription, count=1):
    got = []
    with trio.fail_after(WAIT):
        async for message in subscription:
            got.append(message)
            if len(got) == count:
                break
    return got


async def test_two_subscribers_get_each_message(state):
    channel = user_channel("u1")
    async with (
        state.pubsub.subscribe(channel) as first,
        state.pubsub.subscribe(channel) as second,
        state.pubsub.subscribe(user_channel("u2")) as other,
    ):
        await state.pubsub.publish(channel, b"hello")
        await state.pubsub.publish(channel, b"world")
        await state.pubsub.publish(user_channel("u2"), b"for u2")
        assert await receive(first, 2) == [b"hello", b"world"]
        assert await receive(second, 2) == [b"hello", b"world"]
        # u2's subscriber gets u2's message and nothing of u1's.
        assert await receive(other) == [b"for u2"]


async def test_unsubscribed_gets_nothing_and_can_subscribe_again(state):
    channel = user_channel("u1")
    async with state.pubsub.subscribe(channel) as staying:
        async with state.pubsub.subscribe(channel) as leaving:
            await state.pubsub.publish(channel, b"1")
            assert await receive(leaving) == [b"1"]
        await state.pubsub.publish(channel, b"2")
        assert await receive(staying, 2) == [b"1", b"2"]
    # Every subscriber gone (on Redis: UNSUBSCRIBE), then back (SUBSCRIBE, in that order).
    async with state.pubsub.subscribe(channel) as again:
        await state.pubsub.publish(channel, b"3")
        assert await receive(again) == [b"3"]


async def test_a_left_subscription_ends_its_iteration(state):
    async with state.pubsub.subscribe("c") as subscription:
        pass
    with trio.fail_after(WAIT):
        assert [m async for m in subscription] == []


async def test_slow_subscriber_never_blocks_a_fast_one(state):
    channel = user_channel("u1")
    total = SUBSCRIBER_BUFFER * 3
    async with (
        state.pubsub.subscribe(channel) as slow,
        state.pubsub.subscribe(channel) as fast,
    ):
        # The fast one reads each message before the next is published; the slow one never
        # reads. Neither publishing nor the fast one ever waits for it.
        for i in range(total):
            await state.pubsub.publish(channel, b"%d" % i)
            assert await receive(fast) == [b"%d" % i]
        # The slow one was dropped when its buffer overflowed: it reads what it had buffered,
        # then learns that it lost the rest.
        kept = []

        async def drain():
            async for message in slow:
                kept.append(message)

        with trio.fail_after(WAIT), pytest.raises(SubscriptionOverflow):
            await drain()
        assert kept == [b"%d" % i for i in range(SUBSCRIBER_BUFFER)]
        # A new subscriber of the same channel is served as usual.
        async with state.pubsub.subscribe(channel) as fresh:
            await state.pubsub.publish(channel, b"after")
            assert await receive(fresh) == [b"after"]
            assert await receive(fast) == [b"after"]
