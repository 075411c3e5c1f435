"""Shared state on Redis, for many instances: :func:`open_redis_state`.

How redis-py is driven from Trio
--------------------------------
redis-py's **blocking client in Trio worker threads** (``trio.to_thread.run_sync``), with a
``CapacityLimiter`` as wide as a ``BlockingConnectionPool``. Measured with
``scripts/bench/redis_adapters.py`` (same run, Redis 7.0 on loopback, this 2-core machine;
commands per second, ratio to redis-py's asyncio client under plain asyncio)::

    adapter             GET/SET c=1      GET/SET c=50     pipelined c=1     pipelined c=50
    asyncio (baseline)  2 468 (1.00x)    2 640 (1.00x)    14 952 (1.00x)    14 763 (1.00x)
    trio-asyncio        2 100 (0.85x)    1 794 (0.68x)    15 674 (1.05x)    14 924 (1.01x)
    trio-threads        3 824 (1.55x)    3 172 (1.20x)    61 381 (4.11x)    54 454 (3.69x)

(20 000 single commands and 2 000 pipelines of 100 SETs, at concurrency 1 and 50.)

Why threads:

* fastest everywhere: the sync client's parser and connection code is much lighter than the
  asyncio client's, and that outweighs a thread hop per call; pipelines, the batched
  operations grass depends on (presence, cache reads), run ~4x faster. trio-asyncio adds a
  loop crossing on top of the asyncio client and loses a third at c=50;
* no second event loop: nothing to open around the whole program, and the code stays plain
  Trio (no ``aio_as_trio`` at each call, no asyncio cancellation semantics to reconcile);
* cancellation is deterministic: a cancelled call waits for its thread, bounded by the socket
  timeout, so a pooled connection is never left holding half a reply; the pool bounds the
  threads as well as the connections;
* pub/sub fits: one dedicated thread reads the single subscriber connection with a short poll
  and hands messages to Trio in batches; on cancellation it stops within one poll before its
  connection is closed (see :mod:`.pubsub`).

coredis was not needed. Every Redis error becomes
:class:`~grass.errors.StorageUnavailable` in one place, :meth:`RedisRunner.run`.
Keys and channels live under ``prefix`` (``grass:``); see :mod:`.stores` for the layout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from grass.errors import StorageUnavailable
from grass.storage.inprocess import DEFAULT_MAX_TTL, DEFAULT_SUBSCRIBER_BUFFER
from grass.storage.inprocess.event_log import DEFAULT_MAX_EVENTS, DEFAULT_TTL
from grass.storage.redis._client import RedisRunner, close_client, make_client, safe_url
from grass.storage.redis.events import RedisEventLog
from grass.storage.redis.pubsub import RedisPubSub
from grass.storage.redis.stores import RedisCache, RedisLimiter, RedisPresence, RedisTokens
from grass.storage.shared_state import SharedState

__all__ = [
    "RedisCache",
    "RedisEventLog",
    "RedisLimiter",
    "RedisPresence",
    "RedisPubSub",
    "RedisRunner",
    "RedisTokens",
    "open_redis_state",
    "safe_url",
]


@asynccontextmanager
async def open_redis_state(
    url: str,
    *,
    instance_id: str,
    prefix: str = "grass:",
    max_connections: int = 32,
    subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    cache_max_ttl: float = DEFAULT_MAX_TTL,
    event_log_size: int = DEFAULT_MAX_EVENTS,
    event_log_ttl: float = DEFAULT_TTL,
) -> AsyncIterator[SharedState]:
    """Connects, checks that Redis answers, and runs the pub/sub subscriber until exit.

    Raises :class:`StorageUnavailable` (with the password masked) if Redis does not answer.
    """
    client = make_client(url, max_connections=max_connections)
    subscriber = make_client(url, max_connections=1)
    runner = RedisRunner(client, url=url, prefix=prefix, max_connections=max_connections)
    try:
        try:
            await runner.run(client.ping)
        except StorageUnavailable as exc:
            raise StorageUnavailable(
                f"Redis at {runner.url} does not answer: {exc.__cause__}"
            ) from exc.__cause__
        pubsub = RedisPubSub(
            runner,
            subscriber=subscriber,
            instance_id=instance_id,
            subscriber_buffer=subscriber_buffer,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pubsub.run)
            try:
                yield SharedState(
                    instance_id=instance_id,
                    cache=RedisCache(runner, max_ttl=cache_max_ttl),
                    tokens=RedisTokens(runner),
                    presence=RedisPresence(runner),
                    limiter=RedisLimiter(runner),
                    pubsub=pubsub,
                    events=RedisEventLog(runner, max_events=event_log_size, ttl=event_log_ttl),
                )
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close_client, client)
            await trio.to_thread.run_sync(close_client, subscriber)
