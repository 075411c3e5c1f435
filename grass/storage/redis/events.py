"""The Redis :class:`~grass.storage.shared_state.EventLog`: one stream per channel
(``events:<channel>``, capped at ``max_events`` entries, expiring ``ttl`` after its newest),
Redis's stream ids.

Keeping a message and publishing it is one script, so the published frame carries the id the
stream gave it, and a subscriber can never see a message that is not yet in the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grass.storage.redis._client import RedisRunner
from grass.storage.redis.stores import _ms, _text
from grass.storage.shared_state import Replay, event_order

# KEYS: the stream. ARGV: max entries, ttl in ms, message, prefixed channel. Returns the id.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], id .. '\\n' .. ARGV[3])
return id
"""


class RedisEventLog:
    def __init__(self, runner: RedisRunner, *, max_events: int, ttl: float) -> None:
        if max_events < 1 or not ttl > 0:
            raise ValueError("an event log keeps at least one event for a positive time")
        self._runner = runner
        self._max = max_events
        self._ttl_ms = _ms(ttl)
        self._publish = runner.client.register_script(_PUBLISH)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> list[str]:
        if not messages:
            return []
        runner = self._runner

        def publish() -> list[Any]:
            pipe = runner.client.pipeline(transaction=False)
            for channel, message in messages:
                self._publish(
                    keys=[runner.key("events", channel)],
                    args=[self._max, self._ttl_ms, message, runner.prefix + channel],
                    client=pipe,
                )
            return pipe.execute()

        return [_text(i) for i in await runner.run(publish)]

    async def replay(self, channel: str, after: str | None) -> Replay:
        key = self._runner.key("events", channel)
        client = self._runner.client
        # Text that is not an id is held by no stream: an incomplete replay, not an error.
        seen = after if after is not None and event_order(after) is not None else None

        def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.xrevrange(key, "+", "-", count=1)
            if seen is not None:
                pipe.xrange(key, min=seen, max=seen, count=1)
                pipe.xrange(key, min=f"({seen}", max="+", count=self._max)
            return pipe.execute()

        results = await self._runner.run(read)
        newest = results[0]
        last = _text(newest[0][0]) if newest else None
        if after is None:
            return Replay(events=(), complete=True, last_id=last)
        if seen is None or not results[1]:
            return Replay(events=(), complete=False, last_id=last)
        events = tuple((_text(i), bytes(fields[b"m"])) for i, fields in results[2])
        return Replay(events=events, complete=True, last_id=last)
