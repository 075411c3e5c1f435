"""The one door to Redis: blocking redis-py calls in worker threads, errors mapped once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack
from urllib.parse import urlsplit, urlunsplit

import redis
import trio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from grass.errors import StorageUnavailable

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0


def safe_url(url: str) -> str:
    """The URL as it may appear in a message or a log: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def make_client(url: str, *, max_connections: int) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        # redis-py's default retries ten times: a dead server would take seconds to report.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )
    return redis.Redis(connection_pool=pool)


def close_client(client: redis.Redis) -> None:
    """Closes every pooled connection (a client given its pool leaves the pool open)."""
    client.close()
    client.connection_pool.disconnect()


class RedisRunner:
    """Runs blocking redis-py calls off the Trio thread, at most one per pooled connection.

    Every Redis error of every store passes through :meth:`run` and leaves it as
    :class:`StorageUnavailable`. A cancelled call waits for its thread (bounded by the socket
    timeout) so a connection is never returned to the pool in the middle of a reply.
    """

    def __init__(self, client: redis.Redis, *, url: str, prefix: str, max_connections: int) -> None:
        self.client = client
        self.url = safe_url(url)
        self.prefix = prefix
        self._limiter = trio.CapacityLimiter(max_connections)

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except redis.RedisError as exc:
            raise StorageUnavailable(
                f"Redis at {self.url} failed: {type(exc).__name__}: {exc}"
            ) from exc
