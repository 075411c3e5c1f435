"""The factory of the state instances share: Redis when ``redis.url`` is set, else in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from grass.backends.bundle import Check
from grass.config import Config
from grass.storage.inprocess import open_inprocess_state
from grass.storage.redis import open_redis_state
from grass.storage.shared_state import SharedState


@asynccontextmanager
async def open_shared_state(
    config: Config, *, instance_id: str = "local"
) -> AsyncIterator[tuple[SharedState, dict[str, Check]]]:
    """The shared state and its readiness checks (none in process: it cannot be down)."""
    size, ttl = config.http.live_replay_events, config.http.live_replay_seconds
    if not config.redis.url:
        async with open_inprocess_state(
            instance_id=instance_id, event_log_size=size, event_log_ttl=ttl
        ) as state:
            yield state, {}
        return
    async with open_redis_state(
        config.redis.url.reveal(), instance_id=instance_id, event_log_size=size, event_log_ttl=ttl
    ) as shared:

        async def redis_answers() -> None:
            await shared.presence.lookup(["readyz"])

        yield shared, {"redis": redis_answers}
