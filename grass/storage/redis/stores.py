"""Redis cache, token store, presence and rate limiter: one round trip per operation.

Multi-key operations are Lua scripts (redis-py's ``Script``: EVALSHA, then SCRIPT LOAD and
EVALSHA again on NOSCRIPT), so each is atomic. Some scripts touch keys they derive themselves
(a user's tokens from its index): this targets a standalone Redis (with replicas), not Cluster.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grass import jsontext
from grass.storage.inprocess import DEFAULT_MAX_TTL, ReadThroughCache, check_ttl
from grass.storage.redis._client import RedisRunner
from grass.storage.shared_state import JSON, Decision, TokenRecord, check_limit


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCache(ReadThroughCache):
    """Entries ``cache:<key>`` hold ``<generations JSON>\\n<value JSON>``; a tag's generation is
    ``cachegen:<tag>``, a random token replaced on invalidation (missing means "").

    Generation keys live twice the longest entry TTL, so a token can only vanish (and a
    matching stale entry revive) once every entry that saw it has expired.
    """

    def __init__(self, runner: RedisRunner, *, max_ttl: float = DEFAULT_MAX_TTL) -> None:
        super().__init__(max_ttl=max_ttl)
        self._runner = runner
        self._gen_ttl_ms = _ms(2 * max_ttl + 60)

    async def _read(self, key: str, tags: Sequence[str]) -> tuple[str | None, list[str]]:
        runner = self._runner
        gen_keys = [runner.key("cachegen", tag) for tag in tags]

        def read() -> list[Any]:
            pipe = runner.client.pipeline(transaction=False)
            pipe.get(runner.key("cache", key))
            if gen_keys:
                pipe.mget(gen_keys)
            return pipe.execute()

        replies = await runner.run(read)
        gens = [_text(g) if g is not None else "" for g in (replies[1] if gen_keys else [])]
        entry: bytes | None = replies[0]
        if entry is None:
            return None, gens
        header, _, encoded = entry.partition(b"\n")
        if json.loads(header) != gens:
            return None, gens
        return encoded.decode(), gens

    async def _store(self, key: str, gens: list[str], encoded: str, ttl: float) -> None:
        entry = json.dumps(gens, separators=(",", ":")) + "\n" + encoded
        client = self._runner.client
        await self._runner.run(
            lambda: client.set(self._runner.key("cache", key), entry, px=_ms(ttl))
        )

    async def invalidate(self, *keys: str) -> None:
        if keys:
            names = [self._runner.key("cache", key) for key in keys]
            await self._runner.run(lambda: self._runner.client.delete(*names))

    async def invalidate_tags(self, *tags: str) -> None:
        if not tags:
            return
        runner = self._runner

        def bump() -> None:
            pipe = runner.client.pipeline(transaction=False)
            for tag in tags:
                pipe.set(runner.key("cachegen", tag), secrets.token_hex(8), px=self._gen_ttl_ms)
            pipe.execute()

        await runner.run(bump)


# KEYS: token, index of its user. ARGV: token hash, user, data, ttl ms, index prefix,
# token prefix. Moves the token to its (new) user's index and prunes dead hashes there.
_TOKEN_PUT = """
local old = redis.call('HGET', KEYS[1], 'u')
if old and old ~= ARGV[2] then redis.call('SREM', ARGV[5] .. old, ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
if redis.call('SCARD', KEYS[2]) > 16 then
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[6] .. h) == 0 then redis.call('SREM', KEYS[2], h) end
  end
end
"""

# KEYS: token. ARGV: ttl ms, index prefix.
_TOKEN_TOUCH = """
local u = redis.call('HGET', KEYS[1], 'u')
if not u then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local index = ARGV[2] .. u
if redis.call('PTTL', index) < tonumber(ARGV[1]) then redis.call('PEXPIRE', index, ARGV[1]) end
return 1
"""

# KEYS: token. ARGV: token hash, index prefix.
_TOKEN_REVOKE = """
local u = redis.call('HGET', KEYS[1], 'u')
if not u then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. u, ARGV[1])
return 1
"""

# KEYS: index. ARGV: token prefix, 1 to revoke (else only list). Returns the live hashes.
_TOKEN_OF_USER = """
local live = {}
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. h) == 1 then
    table.insert(live, h)
    if ARGV[2] == '1' then redis.call('DEL', ARGV[1] .. h) end
  end
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
return live
"""


class RedisTokens:
    """``session:<hash>`` is a hash {u: user, d: data JSON}; ``sessions_of:<user>`` a set of
    hashes living at least as long as the user's longest-lived token. (The key names are those
    of the store's earlier name, the session store: tokens in Redis survive an upgrade.)"""

    def __init__(self, runner: RedisRunner) -> None:
        self._runner = runner
        client = runner.client
        self._put = client.register_script(_TOKEN_PUT)
        self._touch = client.register_script(_TOKEN_TOUCH)
        self._revoke = client.register_script(_TOKEN_REVOKE)
        self._of_user = client.register_script(_TOKEN_OF_USER)
        self._token_prefix = runner.key("session", "")
        self._index_prefix = runner.key("sessions_of", "")

    async def put(self, token_hash: str, *, user_id: str, data: JSON, ttl: float) -> None:
        check_ttl(ttl)
        keys = [self._token_prefix + token_hash, self._index_prefix + user_id]
        args: list[str | int] = [
            token_hash,
            user_id,
            json.dumps(data, separators=(",", ":")),
            _ms(ttl),
            self._index_prefix,
            self._token_prefix,
        ]
        await self._runner.run(lambda: self._put(keys=keys, args=args))

    async def get(self, token_hash: str) -> TokenRecord | None:
        client = self._runner.client
        key = self._token_prefix + token_hash
        user, data = await self._runner.run(lambda: client.hmget(key, ["u", "d"]))
        if user is None or data is None:
            return None
        # Shared with other processes: read as any JSON from outside (grass.jsontext).
        return TokenRecord(user_id=_text(user), data=jsontext.loads(data, what="token"))

    async def touch(self, token_hash: str, *, ttl: float) -> bool:
        check_ttl(ttl)
        keys = [self._token_prefix + token_hash]
        args: list[str | int] = [_ms(ttl), self._index_prefix]
        return bool(await self._runner.run(lambda: self._touch(keys=keys, args=args)))

    async def revoke(self, token_hash: str) -> bool:
        keys = [self._token_prefix + token_hash]
        args = [token_hash, self._index_prefix]
        return bool(await self._runner.run(lambda: self._revoke(keys=keys, args=args)))

    async def _of_user_call(self, user_id: str, revoke: bool) -> list[str]:
        keys = [self._index_prefix + user_id]
        args = [self._token_prefix, "1" if revoke else "0"]
        hashes = await self._runner.run(lambda: self._of_user(keys=keys, args=args))
        return sorted(_text(h) for h in hashes)

    async def revoke_user(self, user_id: str) -> list[str]:
        return await self._of_user_call(user_id, revoke=True)

    async def tokens_of(self, user_id: str) -> list[str]:
        return await self._of_user_call(user_id, revoke=False)


# KEYS: presence entries. ARGV: the instance whose entries may be dropped.
_PRESENCE_REMOVE = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
"""


class RedisPresence:
    """``presence:<device>`` holds the instance id, with Redis expiring it."""

    def __init__(self, runner: RedisRunner) -> None:
        self._runner = runner
        self._remove = runner.client.register_script(_PRESENCE_REMOVE)

    async def update_many(self, entries: Mapping[str, str], *, ttl: float) -> None:
        check_ttl(ttl)
        if not entries:
            return
        runner = self._runner
        px = _ms(ttl)

        def update() -> None:
            pipe = runner.client.pipeline(transaction=False)
            for device_id, instance_id in entries.items():
                pipe.set(runner.key("presence", device_id), instance_id, px=px)
            pipe.execute()

        await runner.run(update)

    async def remove_many(self, device_ids: Iterable[str], *, instance_id: str) -> int:
        keys = [self._runner.key("presence", d) for d in set(device_ids)]
        if not keys:
            return 0
        return int(await self._runner.run(lambda: self._remove(keys=keys, args=[instance_id])))

    async def lookup(self, device_ids: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(device_ids))
        if not wanted:
            return {}
        keys = [self._runner.key("presence", d) for d in wanted]
        values = await self._runner.run(lambda: self._runner.client.mget(keys))
        return {d: _text(v) for d, v in zip(wanted, values, strict=True) if v is not None}


# KEYS: the limit's TAT. ARGV: microseconds per token, burst, cost. Returns {allowed,
# retry_after in µs as a string (Lua numbers would be truncated to integers), remaining}.
# Same computation as grass.storage.shared_state.gcra, on the server's clock.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tolerance = burst * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
if allow_at - now > 1 then
  local remaining = math.floor((now + tolerance - tat) / interval + 1e-6)
  return {0, string.format('%.0f', allow_at - now), math.max(0, remaining)}
end
local px = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', px)
return {1, '0', math.max(0, math.floor((now + tolerance - new_tat) / interval + 1e-6))}
"""


class RedisLimiter:
    """GCRA on the Redis server's clock: instances' clocks never matter."""

    def __init__(self, runner: RedisRunner) -> None:
        self._runner = runner
        self._gcra = runner.client.register_script(_GCRA)

    async def hit(self, key: str, *, rate: float, burst: int, cost: int = 1) -> Decision:
        check_limit(rate, burst, cost)
        keys = [self._runner.key("rate", key)]
        args: list[str | int] = [repr(1e6 / rate), burst, cost]
        allowed, retry_us, remaining = await self._runner.run(
            lambda: self._gcra(keys=keys, args=args)
        )
        return Decision(
            allowed=bool(allowed), retry_after=int(retry_us) / 1e6, remaining=int(remaining)
        )
