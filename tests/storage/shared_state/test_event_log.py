"""The event log (replay for live sockets that reconnect), on every shared-state backend."""

from __future__ import annotations

import trio

from grass.storage.shared_state import event_order, frame, unframe, user_channel

from .conftest import EVENT_LOG_SIZE, EVENT_LOG_TTL
from .test_pubsub import receive


def test_frames_carry_the_id_or_none():
    assert unframe(frame("1-2", b'{"a": 1}')) == ("1-2", b'{"a": 1}')
    assert unframe(frame(None, b"x\ny")) == (None, b"x\ny")
    assert event_order("17-3") == (17, 3)
    assert event_order("17") is None
    assert event_order("a-b") is None


async def test_published_messages_are_framed_with_increasing_ids(state):
    channel = user_channel("u1")
    async with state.pubsub.subscribe(channel) as subscription:
        ids = await state.events.publish([(channel, b"one"), (channel, b"two")])
        got = [unframe(m) for m in await receive(subscription, 2)]
    assert got == [(ids[0], b"one"), (ids[1], b"two")]
    assert event_order(ids[0]) < event_order(ids[1])


async def test_replay_gives_what_came_after_an_id(state):
    u1, u2 = user_channel("u1"), user_channel("u2")
    first, second, _, third = await state.events.publish(
        [(u1, b"a"), (u1, b"b"), (u2, b"other"), (u1, b"c")]
    )
    replay = await state.events.replay(u1, first)
    assert replay.complete
    assert replay.events == ((second, b"b"), (third, b"c"))
    assert replay.last_id == third
    newest = await state.events.replay(u1, third)
    assert (newest.complete, newest.events) == (True, ())
    fresh = await state.events.replay(u1, None)
    assert (fresh.complete, fresh.events, fresh.last_id) == (True, (), third)


async def test_an_id_the_log_does_not_hold_gives_an_incomplete_replay(state):
    channel = user_channel("u1")
    ids = await state.events.publish(
        [(channel, str(n).encode()) for n in range(EVENT_LOG_SIZE + 2)]
    )
    # The oldest two were dropped: what followed the first may be missing.
    trimmed = await state.events.replay(channel, ids[0])
    assert (trimmed.complete, trimmed.events) == (False, ())
    kept = await state.events.replay(channel, ids[2])
    assert kept.complete
    assert [i for i, _ in kept.events] == ids[3:]
    for unknown in ("0-1", "nonsense", "99999999999999-0"):
        replay = await state.events.replay(channel, unknown)
        assert (replay.complete, replay.events, replay.last_id) == (False, (), ids[-1])
    empty = await state.events.replay(user_channel("nobody"), ids[0])
    assert (empty.complete, empty.last_id) == (False, None)


async def test_a_log_expires_after_its_newest_message(state, clock):
    channel = user_channel("u1")
    (first,) = await state.events.publish([(channel, b"a")])
    await trio.sleep(EVENT_LOG_TTL / 2)
    (second,) = await state.events.publish([(channel, b"b")])
    await trio.sleep(EVENT_LOG_TTL / 2 + 0.2)
    alive = await state.events.replay(channel, first)
    assert alive.events == ((second, b"b"),)
    await trio.sleep(EVENT_LOG_TTL)
    gone = await state.events.replay(channel, first)
    assert (gone.complete, gone.last_id) == (False, None)


async def test_publishing_nothing_is_nothing(state):
    assert await state.events.publish([]) == []
