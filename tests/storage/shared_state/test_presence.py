import trio

TTL = 0.3


async def test_batch_update_then_lookup(state):
    await state.presence.update_many({f"d{i}": "i1" for i in range(500)}, ttl=60)
    await state.presence.update_many({"x": "i2", "y": "i2"}, ttl=60)
    found = await state.presence.lookup(["d0", "d499", "x", "nobody"])
    assert found == {"d0": "i1", "d499": "i1", "x": "i2"}
    assert await state.presence.lookup([]) == {}
    await state.presence.update_many({}, ttl=60)


async def test_latest_update_wins(state):
    await state.presence.update_many({"d1": "i1"}, ttl=60)
    await state.presence.update_many({"d1": "i2"}, ttl=60)
    assert await state.presence.lookup(["d1"]) == {"d1": "i2"}


async def test_remove_only_drops_entries_of_that_instance(state):
    await state.presence.update_many({"d1": "i1", "d2": "i1", "d3": "i2"}, ttl=60)
    removed = await state.presence.remove_many(["d1", "d3", "unknown"], instance_id="i1")
    assert removed == 1
    assert await state.presence.lookup(["d1", "d2", "d3"]) == {"d2": "i1", "d3": "i2"}
    assert await state.presence.remove_many([], instance_id="i1") == 0


async def test_entries_expire_unless_refreshed(state, clock):
    await state.presence.update_many({"kept": "i1", "dropped": "i1"}, ttl=TTL)
    await trio.sleep(TTL / 2)
    await state.presence.update_many({"kept": "i1"}, ttl=TTL)
    await trio.sleep(TTL / 2 + 0.05)
    assert await state.presence.lookup(["kept", "dropped"]) == {"kept": "i1"}
    await trio.sleep(TTL)
    assert await state.presence.lookup(["kept", "dropped"]) == {}
