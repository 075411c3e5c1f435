"""Redis pub/sub: ONE subscriber connection per process, fanned out to local subscribers.

redis-py's blocking ``PubSub`` is read by one dedicated thread (the pattern redis-py's own
``run_in_thread`` uses: reads in that thread, SUBSCRIBE/UNSUBSCRIBE written from others). The
thread polls with a short timeout so that it notices a stop request quickly, and hands messages
to Trio in batches. SUBSCRIBE and UNSUBSCRIBE go through one ordered queue, so an unsubscribe
and a re-subscribe of the same channel can never overtake each other, and ``subscribe()``
returns only once Redis has confirmed the subscription: a message published after that arrives.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import redis
import trio
from redis.client import PubSub

from grass.errors import StorageUnavailable
from grass.storage.inprocess import DEFAULT_SUBSCRIBER_BUFFER, LocalFanout
from grass.storage.redis._client import RedisRunner

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
RETRY_SECONDS = 1.0
SUBSCRIBE_TIMEOUT = 10.0
BATCH = 256


@attrs.define(eq=False)
class _Pending:
    """A SUBSCRIBE waiting for Redis's confirmation (or for the error that stopped it)."""

    done: trio.Event = attrs.field(factory=trio.Event)
    error: StorageUnavailable | None = None


@attrs.define(eq=False)
class _Channel:
    pending: _Pending
    refs: int = 0


class RedisPubSub:
    def __init__(
        self,
        runner: RedisRunner,
        *,
        subscriber: redis.Redis,
        instance_id: str,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
    ) -> None:
        self._runner = runner
        self._instance_channel = f"instance:{instance_id}"
        self._fanout = LocalFanout(buffer=subscriber_buffer)
        # A client of its own: the subscriber connection must not take a slot of the pool that
        # the runner's threads are sized to.
        # Through a typed alias: redis-py annotates ``pubsub()`` in some releases and not in
        # others, and a call site that needs no ``type: ignore`` holds on every one of them.
        open_pubsub: Callable[[], PubSub] = subscriber.pubsub
        self._pubsub = open_pubsub()
        self._channels: dict[str, _Channel] = {}
        # Confirmations come back in the order the SUBSCRIBEs were sent.
        self._confirmations: dict[str, deque[_Pending]] = {}
        self._commands_in, self._commands_out = trio.open_memory_channel[
            tuple[str, str, _Pending | None]
        ](1_000_000)
        self._stop = threading.Event()
        self._exited = threading.Event()

    async def publish(self, channel: str, message: bytes) -> None:
        name = self._runner.prefix + channel
        await self._runner.run(lambda: self._runner.client.publish(name, message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._fanout.subscribe(channel) as subscriber:
            state = self._acquire(channel)
            try:
                await self._confirmed(state)
                yield subscriber
            finally:
                self._release(channel, state)

    def _acquire(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(_Pending())
            self._confirmations.setdefault(channel, deque()).append(state.pending)
            self._commands_in.send_nowait(("subscribe", channel, state.pending))
        state.refs += 1
        return state

    async def _confirmed(self, state: _Channel) -> None:
        with trio.move_on_after(SUBSCRIBE_TIMEOUT):
            await state.pending.done.wait()
        if not state.pending.done.is_set():
            raise StorageUnavailable(f"Redis at {self._runner.url} did not confirm a subscription")
        if state.pending.error is not None:
            raise state.pending.error

    def _release(self, channel: str, state: _Channel) -> None:
        state.refs -= 1
        if state.refs == 0 and self._channels.get(channel) is state:
            del self._channels[channel]
            self._commands_in.send_nowait(("unsubscribe", channel, None))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Owns the subscriber connection; ready once the instance channel is subscribed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_commands)
            nursery.start_soon(self._listen_in_thread)
            # Subscribing the instance's own channel opens the connection now: a pub/sub that
            # cannot work fails at start, not at the first dashboard.
            await self._confirmed(self._acquire(self._instance_channel))
            task_status.started()

    async def _send_commands(self) -> None:
        async for command, channel, pending in self._commands_out:
            name = self._runner.prefix + channel
            send = self._pubsub.subscribe if command == "subscribe" else self._pubsub.unsubscribe
            try:
                await self._runner.run(send, name)
            except StorageUnavailable as exc:
                log.warning("pub/sub %s of %s failed: %s", command, name, exc)
                if pending is not None:
                    waiting = self._confirmations.get(channel, deque())
                    if pending in waiting:
                        waiting.remove(pending)
                    pending.error = exc
                    pending.done.set()

    async def _listen_in_thread(self) -> None:
        token = trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(
                self._listen, token, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1)
            )
        finally:
            # However we were cancelled, the thread stops within a poll and only then is the
            # connection closed: it is never closed under a read in progress.
            self._stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._exited.wait, SUBSCRIBE_TIMEOUT)
                await trio.to_thread.run_sync(self._pubsub.close)

    def _listen(self, token: trio.lowlevel.TrioToken) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self._pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    batch = [message]
                    while len(batch) < BATCH:
                        message = self._pubsub.get_message(timeout=0)
                        if message is None:
                            break
                        batch.append(message)
                    trio.from_thread.run_sync(self._dispatch, batch, trio_token=token)
                except redis.RedisError as exc:
                    # redis-py reconnects and re-subscribes on the next read: wait, then retry.
                    log.warning("Redis pub/sub at %s: %s", self._runner.url, exc)
                    self._stop.wait(RETRY_SECONDS)
        except trio.RunFinishedError:
            pass
        finally:
            self._exited.set()

    def _dispatch(self, batch: list[dict[str, Any]]) -> None:
        prefix = self._runner.prefix.encode()
        for message in batch:
            channel = message["channel"]
            if not isinstance(channel, bytes) or not channel.startswith(prefix):
                continue
            name = channel[len(prefix) :].decode()
            if message["type"] == "message":
                self._fanout.deliver(name, message["data"])
            elif message["type"] == "subscribe":
                waiting = self._confirmations.get(name)
                if waiting:
                    waiting.popleft().done.set()
                    if not waiting:
                        del self._confirmations[name]
