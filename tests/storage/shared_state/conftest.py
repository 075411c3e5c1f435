"""The conformance suite runs every test once per implementation of the shared state.

``state`` is the bundle under test; ``clock`` must be a parameter of tests that wait: it is
pytest-trio's autojump clock for the in-process state (virtual time) and None for Redis, whose
expiries run on its own real clock, so there the waits are real and kept short.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from trio.testing import MockClock

from grass.storage.inprocess import open_inprocess_state
from grass.storage.redis import open_redis_state

SUBSCRIBER_BUFFER = 8
#: The event log of the state under test: a few events, kept a short (real, on Redis) time.
EVENT_LOG_SIZE = 5
EVENT_LOG_TTL = 1.0


@pytest.fixture(params=["inprocess", "redis"])
def backend(request):
    return request.param


@pytest.fixture
def clock(backend):
    return MockClock(autojump_threshold=0) if backend == "inprocess" else None


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_namespace(redis_url):
    """A Redis URL and a key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"grass:test:{uuid.uuid4().hex[:12]}:"
    yield redis_url, prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def namespace(backend, request):
    """(url, prefix) for Redis, None in process (the redis_url fixture skips or fails first)."""
    if backend == "inprocess":
        return None
    return request.getfixturevalue("redis_namespace")


@pytest.fixture
async def state(namespace):
    if namespace is None:
        async with open_inprocess_state(
            subscriber_buffer=SUBSCRIBER_BUFFER,
            event_log_size=EVENT_LOG_SIZE,
            event_log_ttl=EVENT_LOG_TTL,
        ) as opened:
            yield opened
        return
    url, prefix = namespace
    async with open_redis_state(
        url,
        instance_id="test-1",
        prefix=prefix,
        max_connections=16,
        subscriber_buffer=SUBSCRIBER_BUFFER,
        event_log_size=EVENT_LOG_SIZE,
        event_log_ttl=EVENT_LOG_TTL,
    ) as opened:
        yield opened
