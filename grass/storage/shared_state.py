"""Storage interfaces of the state instances share beside the database: cache, expiring tokens,
presence, rate limits, pub/sub, event log; and their bundle, :class:`SharedState`.

Two implementations of every Protocol here: :mod:`grass.storage.inprocess` (one instance, no
service; the default) and :mod:`grass.storage.redis` (many instances sharing one Redis). Both
are opened as a :class:`SharedState` bundle by an async context manager that owns their
background tasks, and both pass the same conformance suite (``tests/storage/shared_state/``).

Names given to these interfaces are logical (``"dash:u1"``, ``"user:u1"``); the implementation
puts them under its namespace (``grass:`` unless told otherwise), so Redis sees
``grass:cache:dash:u1`` or the channel ``grass:user:u1``.

Errors: a backend that cannot be reached raises
:class:`~grass.errors.StorageUnavailable`; a local subscriber that falls too far behind
gets :class:`SubscriptionOverflow` from its iterator (see :class:`PubSub`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from grass.errors import StorageError, Unavailable

#: What the cache and the token store accept: anything ``json.dumps`` takes. Values come back
#: as ``json.loads`` gives them (tuples become lists), from the loader and from the cache alike.
JSON = Any

#: Below this, two GCRA instants are the same (float and microsecond rounding).
GCRA_EPSILON = 1e-6


def user_channel(user_id: str) -> str:
    """The pub/sub channel of one user's live events (``grass:user:<id>`` on Redis)."""
    return f"user:{user_id}"


def user_tag(user_id: str) -> str:
    """The cache tag of everything derived from one user's data."""
    return f"user:{user_id}"


class SubscriptionOverflow(StorageError, Unavailable):
    """A local subscriber fell more than its buffer behind and was dropped.

    It has lost messages: a live socket should close and let its client reconnect and replay
    from the last event id it saw.
    """

    code = "subscription_overflow"


@attrs.frozen(kw_only=True)
class Decision:
    """The answer of a rate limiter to one hit."""

    allowed: bool
    #: Seconds until the same hit would be allowed (0 when allowed).
    retry_after: float
    #: Hits of cost 1 that would still be allowed right now, after this one.
    remaining: int


@attrs.frozen(kw_only=True)
class TokenRecord:
    user_id: str
    data: JSON


def gcra(
    tat: float | None, now: float, *, rate: float, burst: int, cost: int
) -> tuple[float | None, Decision]:
    """One hit of the generic cell rate algorithm (sans I/O).

    ``tat`` is the stored theoretical arrival time (None when the key is new), ``rate`` tokens
    per second, ``burst`` the bucket size. Returns the TAT to store (None: leave it unchanged)
    and the decision. The Redis Lua script is the same computation in microseconds.
    """
    interval = 1.0 / rate
    tolerance = burst * interval
    tat = now if tat is None or tat < now else tat
    new_tat = tat + cost * interval
    allow_at = new_tat - tolerance
    if allow_at - now > GCRA_EPSILON:
        remaining = math.floor((now + tolerance - tat) / interval + GCRA_EPSILON)
        return None, Decision(
            allowed=False, retry_after=allow_at - now, remaining=max(0, remaining)
        )
    remaining = math.floor((now + tolerance - new_tat) / interval + GCRA_EPSILON)
    return new_tat, Decision(allowed=True, retry_after=0.0, remaining=max(0, remaining))


def check_limit(rate: float, burst: int, cost: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of hits per second, not {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
    if not 1 <= cost <= burst:
        raise ValueError(f"cost must be between 1 and burst ({burst}), not {cost!r}")


class Cache(Protocol):
    """Read-through cache of JSON-able values, invalidated by key or by tag.

    Tags are how a write drops every read derived from some data: a dashboard read of user U
    is cached with ``tags=[user_tag(U)]`` and any write to U's data calls
    ``invalidate_tags(user_tag(U))``. Invalidation is safe against the read/write race: a read
    that loaded before the invalidation never lands in the cache afterwards (each entry records
    the generations of its tags as they were when its load started).
    """

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[JSON]],
        *,
        ttl: float,
        tags: Iterable[str] = (),
    ) -> JSON:
        """The cached value of ``key``, or ``await loader()`` stored for ``ttl`` seconds.

        Within one process, concurrent misses of the same key call the loader once.
        """
        ...

    async def invalidate(self, *keys: str) -> None: ...

    async def invalidate_tags(self, *tags: str) -> None: ...


class TokenStore(Protocol):
    """Revocable records that expire, keyed by the hash of a secret (a token, a nonce), indexed
    by user: the wallet challenges' nonces (grass.services.wallets). Login sessions are the
    database's (``UserStore``)."""

    async def put(self, token_hash: str, *, user_id: str, data: JSON, ttl: float) -> None: ...

    async def get(self, token_hash: str) -> TokenRecord | None: ...

    async def touch(self, token_hash: str, *, ttl: float) -> bool:
        """Let the record live ``ttl`` seconds from now; False if it is gone."""
        ...

    async def revoke(self, token_hash: str) -> bool:
        """Drop one record; False if it was already gone."""
        ...

    async def revoke_user(self, user_id: str) -> list[str]:
        """Drop every record of a user; returns the hashes that were live."""
        ...

    async def tokens_of(self, user_id: str) -> list[str]:
        """The hashes of a user's live records (sorted)."""
        ...


class Presence(Protocol):
    """Which instance holds each online device. Entries expire unless refreshed."""

    async def update_many(self, entries: Mapping[str, str], *, ttl: float) -> None:
        """Set ``device_id -> instance_id`` for all entries, in one round trip."""
        ...

    async def remove_many(self, device_ids: Iterable[str], *, instance_id: str) -> int:
        """Drop the entries that still point at ``instance_id`` (a device that reconnected
        elsewhere keeps its new entry); returns how many were dropped."""
        ...

    async def lookup(self, device_ids: Iterable[str]) -> dict[str, str]:
        """``device_id -> instance_id`` for the online ones among ``device_ids``."""
        ...


class RateLimiter(Protocol):
    """GCRA limits shared by every instance: ``burst`` hits at once, refilled at ``rate``/s."""

    async def hit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision: ...


class PubSub(Protocol):
    """Fire-and-forget messages between instances, fanned out to local subscribers.

    Each local subscriber has a bounded buffer. A subscriber that falls behind by more than its
    buffer is dropped, never waited for: its iterator yields what it had buffered, then raises
    :class:`SubscriptionOverflow`. A slow subscriber therefore never delays the others, and it
    always knows when it has lost messages.
    """

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Messages published to ``channel`` once the context is entered, in order."""
        ...


def frame(event_id: str | None, message: bytes) -> bytes:
    """A message on a user channel: ``<id>\n<message>``; control messages (never kept for
    replay: a revoked session, say) have an empty id."""
    return (event_id or "").encode() + b"\n" + message


def unframe(raw: bytes) -> tuple[str | None, bytes]:
    """The id (None for a control message) and the message of a framed user-channel message."""
    head, _, message = raw.partition(b"\n")
    return (head.decode() or None), message


def event_order(event_id: str) -> tuple[int, int] | None:
    """Ids are ``<a>-<b>`` (Redis stream ids, or the process's start and a counter); their
    order is that of ``(a, b)``. None for text that is not an id."""
    a, sep, b = event_id.partition("-")
    if not (sep and a.isdigit() and b.isdigit() and len(a) <= 20 and len(b) <= 20):
        return None
    return int(a), int(b)


@attrs.frozen(kw_only=True)
class Replay:
    """What a channel's log holds after an id."""

    #: ``(id, message)`` of every kept message after the id asked for, oldest first.
    events: tuple[tuple[str, bytes], ...]
    #: False when the log no longer holds (or never held) the id asked for: messages may be
    #: missing, and the subscriber must refetch what it shows.
    complete: bool
    #: The id of the channel's newest kept message (None when nothing is kept).
    last_id: str | None


class EventLog(Protocol):
    """A bounded, expiring history of the messages of each channel, for subscribers that
    reconnect (the live dashboard socket's ``since``).

    :meth:`publish` keeps each message in its channel's log (the newest ``max_events``; the
    whole log expires ``ttl`` seconds after its newest message) under a new id, increasing per
    channel, and publishes it on the channel through the pub/sub as ``frame(id, message)``.
    A subscriber subscribes first, then asks for the :meth:`replay` after the last id it saw,
    and drops live messages whose id is not after what the replay gave: nothing is lost or
    seen twice in between.
    """

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> list[str]:
        """Keep and publish ``(channel, message)`` pairs, in order; their ids."""
        ...

    async def replay(self, channel: str, after: str | None) -> Replay:
        """The kept messages after ``after`` (none when None: only ``last_id`` is wanted)."""
        ...


@attrs.frozen(kw_only=True)
class SharedState:
    """Everything instances share beside the database, opened and closed together."""

    instance_id: str
    cache: Cache
    tokens: TokenStore
    presence: Presence
    limiter: RateLimiter
    pubsub: PubSub
    events: EventLog


def sorted_unique(items: Iterable[str]) -> Sequence[str]:
    return sorted(set(items))
