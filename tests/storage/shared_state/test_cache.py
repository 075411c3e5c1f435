import pytest
import trio

from grass.storage.shared_state import user_tag

TTL = 0.3


class Loader:
    def __init__(self, value="v"):
        self.calls = 0
        self.value = value

    async def __call__(self):
        self.calls += 1
        return {"value": self.value, "call": self.calls}


async def test_loads_once_then_serves_from_cache(state):
    loader = Loader()
    first = await state.cache.get_or_load("dash:u1", loader, ttl=60)
    second = await state.cache.get_or_load("dash:u1", loader, ttl=60)
    assert first == second == {"value": "v", "call": 1}
    assert loader.calls == 1


async def test_values_come_back_as_json_decodes_them(state):
    async def load():
        return {"items": (1, 2), "none": None}

    fresh = await state.cache.get_or_load("k", load, ttl=60)
    cached = await state.cache.get_or_load("k", load, ttl=60)
    assert fresh == cached == {"items": [1, 2], "none": None}


async def test_none_is_cached_like_any_value(state):
    calls = []

    async def load():
        calls.append(1)

    assert await state.cache.get_or_load("k", load, ttl=60) is None
    assert await state.cache.get_or_load("k", load, ttl=60) is None
    assert len(calls) == 1


async def test_invalidate_makes_it_reload(state):
    loader = Loader()
    await state.cache.get_or_load("a", loader, ttl=60)
    await state.cache.get_or_load("b", loader, ttl=60)
    await state.cache.invalidate("a")
    assert (await state.cache.get_or_load("a", loader, ttl=60))["call"] == 3
    assert (await state.cache.get_or_load("b", loader, ttl=60))["call"] == 2


async def test_ttl_expiry_reloads(state, clock):
    loader = Loader()
    await state.cache.get_or_load("k", loader, ttl=TTL)
    await state.cache.get_or_load("k", loader, ttl=TTL)
    assert loader.calls == 1
    await trio.sleep(TTL + 0.1)
    assert (await state.cache.get_or_load("k", loader, ttl=TTL))["call"] == 2


async def test_invalidating_a_users_tag_drops_all_their_reads(state):
    loader = Loader()
    u1 = [user_tag("u1")]
    await state.cache.get_or_load("dash:u1:totals", loader, ttl=60, tags=u1)
    await state.cache.get_or_load("dash:u1:devices", loader, ttl=60, tags=u1)
    await state.cache.get_or_load("dash:u2:totals", loader, ttl=60, tags=[user_tag("u2")])
    await state.cache.get_or_load("global", loader, ttl=60)
    assert loader.calls == 4

    await state.cache.invalidate_tags(user_tag("u1"))
    for key, tags in [("dash:u1:totals", u1), ("dash:u1:devices", u1)]:
        await state.cache.get_or_load(key, loader, ttl=60, tags=tags)
    assert loader.calls == 6
    await state.cache.get_or_load("dash:u2:totals", loader, ttl=60, tags=[user_tag("u2")])
    await state.cache.get_or_load("global", loader, ttl=60)
    assert loader.calls == 6


async def test_entry_with_several_tags_drops_when_any_changes(state):
    loader = Loader()
    tags = ["user:u1", "epoch:7"]
    await state.cache.get_or_load("k", loader, ttl=60, tags=tags)
    await state.cache.invalidate_tags("epoch:7")
    await state.cache.get_or_load("k", loader, ttl=60, tags=tags)
    await state.cache.get_or_load("k", loader, ttl=60, tags=tags)
    assert loader.calls == 2


async def test_a_load_overtaken_by_an_invalidation_is_not_kept(state):
    # The write lands (and invalidates) while the read is loading the old data: the old data
    # must not stay in the cache.
    calls = []

    async def load():
        calls.append(1)
        if len(calls) == 1:
            await state.cache.invalidate_tags(user_tag("u1"))
            return "old"
        return "new"

    tags = [user_tag("u1")]
    assert await state.cache.get_or_load("k", load, ttl=60, tags=tags) == "old"
    assert await state.cache.get_or_load("k", load, ttl=60, tags=tags) == "new"
    assert await state.cache.get_or_load("k", load, ttl=60, tags=tags) == "new"
    assert len(calls) == 2


async def test_concurrent_misses_call_the_loader_once(state):
    release = trio.Event()
    started = trio.Event()
    calls = []

    async def load():
        calls.append(1)
        started.set()
        await release.wait()
        return "v"

    results = []

    async def read():
        results.append(await state.cache.get_or_load("k", load, ttl=60))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(read)
        await started.wait()
        release.set()
    assert results == ["v"] * 10
    assert len(calls) == 1


async def test_a_failed_load_is_not_cached(state):
    calls = []

    async def load():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database down")
        return "v"

    with pytest.raises(RuntimeError, match="database down"):
        await state.cache.get_or_load("k", load, ttl=60)
    assert await state.cache.get_or_load("k", load, ttl=60) == "v"


async def test_ttl_must_be_positive(state):
    async def load():
        return 1

    for ttl in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="ttl"):
            await state.cache.get_or_load("k", load, ttl=ttl)
