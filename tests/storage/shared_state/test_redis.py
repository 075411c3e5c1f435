"""What only the Redis implementation has: several instances, a server that can go away."""

import time
from urllib.parse import urlsplit

import pytest
import redis
import trio

from grass.errors import StorageUnavailable
from grass.storage.redis import open_redis_state, safe_url
from grass.storage.shared_state import user_channel

WAIT = 5


async def test_redis_that_does_not_answer_is_unavailable_without_the_password():
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        async with open_redis_state("redis://:hunter2@127.0.0.1:1/0", instance_id="i1"):
            pass
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "hunter2" not in message
    assert "redis://:***@127.0.0.1:1/0" in message
    assert "does not answer" in message


def test_safe_url():
    assert safe_url("redis://user:secret@h:6380/2") == "redis://user:***@h:6380/2"
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"


async def test_messages_cross_instances(redis_namespace):
    url, prefix = redis_namespace
    async with (
        open_redis_state(url, instance_id="i1", prefix=prefix) as one,
        open_redis_state(url, instance_id="i2", prefix=prefix) as two,
        two.pubsub.subscribe(user_channel("u1")) as subscription,
    ):
        await one.pubsub.publish(user_channel("u1"), b"from i1")
        with trio.fail_after(WAIT):
            assert await subscription.__anext__() == b"from i1"


async def test_instances_share_one_limit(redis_namespace):
    url, prefix = redis_namespace
    async with (
        open_redis_state(url, instance_id="i1", prefix=prefix) as one,
        open_redis_state(url, instance_id="i2", prefix=prefix) as two,
    ):
        decisions = [
            await state.limiter.hit("auth:u1", rate=0.001, burst=4)
            for state in (one, two, one, two, one, two)
        ]
        assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2


async def test_keys_and_channels_live_under_the_prefix(redis_namespace):
    url, prefix = redis_namespace

    async def load():
        return 1

    async with open_redis_state(url, instance_id="i1", prefix=prefix) as state:
        await state.cache.get_or_load("k", load, ttl=60)
        await state.presence.update_many({"d1": "i1"}, ttl=60)
        await state.tokens.put("h1", user_id="u1", data={}, ttl=60)
        await state.limiter.hit("k", rate=1, burst=1)
    client = redis.Redis.from_url(url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}*"))
        channels = [c.decode() for c in client.pubsub_channels(f"{prefix}*")]
    finally:
        client.close()
    assert keys == [
        f"{prefix}cache:k",
        f"{prefix}presence:d1",
        f"{prefix}rate:k",
        f"{prefix}session:h1",
        f"{prefix}sessions_of:u1",
    ]
    assert channels == []  # the instance channel went with the instance


async def test_scripts_are_reloaded_after_a_flush(redis_namespace):
    url, prefix = redis_namespace
    async with open_redis_state(url, instance_id="i1", prefix=prefix) as state:
        assert (await state.limiter.hit("k", rate=0.001, burst=2)).allowed
        client = redis.Redis.from_url(url)
        try:
            client.script_flush()
        finally:
            client.close()
        assert (await state.limiter.hit("k", rate=0.001, burst=2)).allowed
        assert not (await state.limiter.hit("k", rate=0.001, burst=2)).allowed


async def test_closing_with_a_waiting_subscriber_is_prompt(redis_namespace):
    url, prefix = redis_namespace
    started = trio.current_time()
    async with open_redis_state(url, instance_id="i1", prefix=prefix) as state:
        with trio.move_on_after(0.2):
            async with state.pubsub.subscribe("quiet") as subscription:
                async for _ in subscription:
                    raise AssertionError("nothing was published")
    assert trio.current_time() - started < 2


class Proxy:
    """A TCP relay to Redis that the test can take down and bring back on the same port."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.port = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._relay, listeners)
                task_status.started(scope)

    async def _relay(self, client):
        async with (
            client,
            await trio.open_tcp_stream(*self.target) as upstream,
            trio.open_nursery() as nursery,
        ):

            async def pump(source, sink):
                async for data in source:
                    await sink.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)


async def test_lost_server_is_unavailable_then_recovers(redis_namespace):
    url, prefix = redis_namespace
    parts = urlsplit(url)
    proxy = Proxy(parts.hostname, parts.port or 6379)
    async with trio.open_nursery() as nursery:
        relay = await nursery.start(proxy.run)
        via_proxy = parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
        async with (
            open_redis_state(via_proxy, instance_id="i1", prefix=prefix) as state,
            open_redis_state(url, instance_id="i2", prefix=prefix) as direct,
            state.pubsub.subscribe("kept") as kept,
        ):
            await state.presence.update_many({"d1": "i1"}, ttl=60)
            relay.cancel()
            with pytest.raises(StorageUnavailable, match=r"Redis at redis://127\.0\.0\.1"):
                await state.presence.lookup(["d1"])
            relay = await nursery.start(proxy.run)
            assert await state.presence.lookup(["d1"]) == {"d1": "i1"}
            # The subscriber connection comes back by itself and re-subscribes what it had;
            # when is up to it, so publish until the message gets through.
            with trio.fail_after(WAIT):
                async with trio.open_nursery() as publishers:

                    async def keep_publishing():
                        while True:
                            await direct.pubsub.publish("kept", b"again")
                            await trio.sleep(0.1)

                    publishers.start_soon(keep_publishing)
                    assert await kept.__anext__() == b"again"
                    publishers.cancel_scope.cancel()
        relay.cancel()
