"""The in-process backend of the shared state (grass.storage.shared_state): one instance, no
Redis; its event log is :mod:`grass.storage.inprocess.event_log`. Time is Trio's clock, so
tests run virtual.

Also the building blocks the Redis implementation reuses: the read-through logic with
single-flight (:class:`ReadThroughCache`) and the local fan-out of pub/sub messages
(:class:`LocalFanout`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from grass.storage.inprocess.event_log import DEFAULT_MAX_EVENTS, DEFAULT_TTL, InProcessEventLog
from grass.storage.shared_state import (
    JSON,
    Decision,
    SharedState,
    SubscriptionOverflow,
    TokenRecord,
    check_limit,
    gcra,
    sorted_unique,
)

DEFAULT_MAX_TTL = 86_400.0
DEFAULT_SUBSCRIBER_BUFFER = 256


def check_ttl(ttl: float, max_ttl: float = math.inf) -> None:
    if not 0 < ttl <= max_ttl:
        raise ValueError(f"ttl must be in (0, {max_ttl}] seconds, not {ttl!r}")


class ReadThroughCache:
    """The read-through algorithm; subclasses say how an entry is read and stored.

    An entry is stored with the generations its tags had before its loader ran, and read back
    only while they are unchanged: an invalidation between load and store can never leave a
    stale value behind.
    """

    def __init__(self, *, max_ttl: float) -> None:
        self.max_ttl = max_ttl
        self._inflight: dict[str, trio.Event] = {}
        # Loads finished so far: a miss read while one finished may predate its store.
        self._landed = 0

    async def _read(self, key: str, tags: Sequence[str]) -> tuple[str | None, list[str]]:
        """The entry's JSON if present and its generations match, and the current ones."""
        raise NotImplementedError

    async def _store(self, key: str, gens: list[str], encoded: str, ttl: float) -> None:
        raise NotImplementedError

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[JSON]],
        *,
        ttl: float,
        tags: Iterable[str] = (),
    ) -> JSON:
        check_ttl(ttl, self.max_ttl)
        tag_list = sorted_unique(tags)
        rereads = 0
        while True:
            landed = self._landed
            encoded, gens = await self._read(key, tag_list)
            if encoded is not None:
                return json.loads(encoded)
            running = self._inflight.get(key)
            if running is not None:
                # Another task of this process is loading the key: wait, then read what it stored.
                await running.wait()
            elif landed != self._landed and rereads < 3:
                rereads += 1
            else:
                break
        done = self._inflight[key] = trio.Event()
        try:
            started = trio.current_time()
            encoded = json.dumps(await loader(), separators=(",", ":"))
            # Generation tokens outlive entries by far, but not forever: a load slower than the
            # longest TTL could see a token come back, so its result is not kept.
            if trio.current_time() - started <= self.max_ttl:
                await self._store(key, gens, encoded, ttl)
            return json.loads(encoded)
        finally:
            del self._inflight[key]
            self._landed += 1
            done.set()


@attrs.define
class _Entry:
    expires_at: float
    gens: list[str]
    encoded: str


class InProcessCache(ReadThroughCache):
    """At most ``max_entries`` entries, the least recently stored dropped first."""

    def __init__(self, *, max_entries: int = 10_000, max_ttl: float = DEFAULT_MAX_TTL) -> None:
        super().__init__(max_ttl=max_ttl)
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._gens: dict[str, str] = {}
        self._counter = itertools.count(1)

    async def _read(self, key: str, tags: Sequence[str]) -> tuple[str | None, list[str]]:
        await trio.lowlevel.checkpoint()
        gens = [self._gens.get(tag, "") for tag in tags]
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= trio.current_time() or entry.gens != gens:
            return None, gens
        return entry.encoded, gens

    async def _store(self, key: str, gens: list[str], encoded: str, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        self._entries[key] = _Entry(trio.current_time() + ttl, gens, encoded)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def invalidate(self, *keys: str) -> None:
        await trio.lowlevel.checkpoint()
        for key in keys:
            self._entries.pop(key, None)

    async def invalidate_tags(self, *tags: str) -> None:
        await trio.lowlevel.checkpoint()
        if len(self._gens) >= 16 * self._max_entries:
            # Forgetting generations would revive old entries: forget those too.
            self._gens.clear()
            self._entries.clear()
        for tag in tags:
            self._gens[tag] = str(next(self._counter))


@attrs.define
class _Token:
    user_id: str
    data: str
    expires_at: float


class InProcessTokens:
    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._by_user: dict[str, set[str]] = {}

    def _live(self, token_hash: str) -> _Token | None:
        token = self._tokens.get(token_hash)
        if token is not None and token.expires_at <= trio.current_time():
            self._drop(token_hash)
            return None
        return token

    def _drop(self, token_hash: str) -> _Token | None:
        token = self._tokens.pop(token_hash, None)
        if token is not None:
            hashes = self._by_user[token.user_id]
            hashes.discard(token_hash)
            if not hashes:
                del self._by_user[token.user_id]
        return token

    async def put(self, token_hash: str, *, user_id: str, data: JSON, ttl: float) -> None:
        check_ttl(ttl)
        await trio.lowlevel.checkpoint()
        self._drop(token_hash)
        encoded = json.dumps(data, separators=(",", ":"))
        self._tokens[token_hash] = _Token(user_id, encoded, trio.current_time() + ttl)
        self._by_user.setdefault(user_id, set()).add(token_hash)

    async def get(self, token_hash: str) -> TokenRecord | None:
        await trio.lowlevel.checkpoint()
        token = self._live(token_hash)
        if token is None:
            return None
        return TokenRecord(user_id=token.user_id, data=json.loads(token.data))

    async def touch(self, token_hash: str, *, ttl: float) -> bool:
        check_ttl(ttl)
        await trio.lowlevel.checkpoint()
        token = self._live(token_hash)
        if token is None:
            return False
        token.expires_at = trio.current_time() + ttl
        return True

    async def revoke(self, token_hash: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._live(token_hash) is not None and self._drop(token_hash) is not None

    async def revoke_user(self, user_id: str) -> list[str]:
        live = await self.tokens_of(user_id)
        for token_hash in live:
            self._drop(token_hash)
        return live

    async def tokens_of(self, user_id: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        hashes = list(self._by_user.get(user_id, ()))
        return sorted(h for h in hashes if self._live(h) is not None)


class InProcessPresence:
    def __init__(self) -> None:
        self._where: dict[str, tuple[str, float]] = {}
        self._sweep_at = 1024

    async def update_many(self, entries: Mapping[str, str], *, ttl: float) -> None:
        check_ttl(ttl)
        await trio.lowlevel.checkpoint()
        expires_at = trio.current_time() + ttl
        for device_id, instance_id in entries.items():
            self._where[device_id] = (instance_id, expires_at)
        if len(self._where) >= self._sweep_at:
            # Amortised: sweep when the table has doubled since the last sweep.
            now = trio.current_time()
            self._where = {d: e for d, e in self._where.items() if e[1] > now}
            self._sweep_at = max(1024, 2 * len(self._where))

    async def remove_many(self, device_ids: Iterable[str], *, instance_id: str) -> int:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        removed = 0
        for device_id in set(device_ids):
            entry = self._where.get(device_id)
            if entry is not None and entry[0] == instance_id:
                del self._where[device_id]
                removed += entry[1] > now
        return removed

    async def lookup(self, device_ids: Iterable[str]) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        found: dict[str, str] = {}
        for device_id in device_ids:
            entry = self._where.get(device_id)
            if entry is not None and entry[1] > now:
                found[device_id] = entry[0]
        return found


class InProcessLimiter:
    """The same GCRA as the Redis script, on ``trio.current_time()``."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._sweep_at = 1024

    async def hit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        check_limit(rate, burst, cost)
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        new_tat, decision = gcra(self._tats.get(key), now, rate=rate, burst=burst, cost=cost)
        if new_tat is not None:
            self._tats[key] = new_tat
            if len(self._tats) >= self._sweep_at:
                # A TAT in the past means a full bucket, the same as no entry.
                self._tats = {k: t for k, t in self._tats.items() if t > now}
                self._sweep_at = max(1024, 2 * len(self._tats))
        return decision


class _Subscriber:
    __slots__ = ("overflowed", "receive", "send")

    def __init__(self, buffer: int) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](buffer)
        self.overflowed = False

    def __aiter__(self) -> _Subscriber:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive.receive()
        except trio.EndOfChannel:
            if self.overflowed:
                raise SubscriptionOverflow(
                    "this subscriber fell too far behind and lost messages"
                ) from None
            raise StopAsyncIteration from None


class LocalFanout:
    """Delivers each message to every local subscriber of its channel without ever waiting."""

    def __init__(self, *, buffer: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._buffer = buffer
        self._subscribers: dict[str, set[_Subscriber]] = {}

    def deliver(self, channel: str, message: bytes) -> None:
        for subscriber in list(self._subscribers.get(channel, ())):
            try:
                subscriber.send.send_nowait(message)
            except trio.WouldBlock:
                subscriber.overflowed = True
                subscriber.send.close()
                self._subscribers[channel].discard(subscriber)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_Subscriber]:
        subscriber = _Subscriber(self._buffer)
        self._subscribers.setdefault(channel, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[channel]
            # Iterating a left subscription ends (after what it had buffered) instead of hanging.
            subscriber.send.close()


class InProcessPubSub:
    def __init__(self, *, subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._fanout = LocalFanout(buffer=subscriber_buffer)

    async def publish(self, channel: str, message: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._fanout.deliver(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._fanout.subscribe(channel) as subscriber:
            yield subscriber


@asynccontextmanager
async def open_inprocess_state(
    *,
    instance_id: str = "local",
    cache_max_entries: int = 10_000,
    subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    event_log_size: int = DEFAULT_MAX_EVENTS,
    event_log_ttl: float = DEFAULT_TTL,
) -> AsyncIterator[SharedState]:
    """Shared state for a single instance; nothing to connect to, nothing persisted."""
    pubsub = InProcessPubSub(subscriber_buffer=subscriber_buffer)
    yield SharedState(
        instance_id=instance_id,
        cache=InProcessCache(max_entries=cache_max_entries),
        tokens=InProcessTokens(),
        presence=InProcessPresence(),
        limiter=InProcessLimiter(),
        pubsub=pubsub,
        events=InProcessEventLog(pubsub, max_events=event_log_size, ttl=event_log_ttl),
    )
