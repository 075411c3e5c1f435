import trio

from grass.storage.shared_state import TokenRecord

TTL = 0.3


async def test_put_then_get(state):
    await state.tokens.put("h1", user_id="u1", data={"ip": "10.0.0.1", "n": 1}, ttl=60)
    assert await state.tokens.get("h1") == TokenRecord(
        user_id="u1", data={"ip": "10.0.0.1", "n": 1}
    )
    assert await state.tokens.get("missing") is None


async def test_revoke_one(state):
    await state.tokens.put("h1", user_id="u1", data={}, ttl=60)
    await state.tokens.put("h2", user_id="u1", data={}, ttl=60)
    assert await state.tokens.revoke("h1") is True
    assert await state.tokens.revoke("h1") is False
    assert await state.tokens.get("h1") is None
    assert await state.tokens.get("h2") is not None
    assert await state.tokens.tokens_of("u1") == ["h2"]


async def test_revoke_all_of_a_user(state):
    for h in ("h1", "h2", "h3"):
        await state.tokens.put(h, user_id="u1", data={}, ttl=60)
    await state.tokens.put("other", user_id="u2", data={}, ttl=60)
    assert await state.tokens.revoke_user("u1") == ["h1", "h2", "h3"]
    for h in ("h1", "h2", "h3"):
        assert await state.tokens.get(h) is None
    assert await state.tokens.tokens_of("u1") == []
    assert await state.tokens.revoke_user("u1") == []
    assert await state.tokens.get("other") is not None


async def test_tokens_expire_and_leave_the_user_index(state, clock):
    await state.tokens.put("short", user_id="u1", data={}, ttl=TTL)
    await state.tokens.put("long", user_id="u1", data={}, ttl=60)
    await trio.sleep(TTL + 0.1)
    assert await state.tokens.get("short") is None
    assert await state.tokens.tokens_of("u1") == ["long"]
    assert await state.tokens.revoke_user("u1") == ["long"]


async def test_touch_extends(state, clock):
    await state.tokens.put("h1", user_id="u1", data={}, ttl=TTL)
    assert await state.tokens.touch("h1", ttl=TTL * 4) is True
    await trio.sleep(TTL + 0.1)
    assert await state.tokens.get("h1") is not None
    assert await state.tokens.tokens_of("u1") == ["h1"]
    await trio.sleep(TTL * 3)
    assert await state.tokens.get("h1") is None
    assert await state.tokens.touch("h1", ttl=60) is False


async def test_put_again_replaces_and_moves_between_users(state):
    await state.tokens.put("h1", user_id="u1", data={"v": 1}, ttl=60)
    await state.tokens.put("h1", user_id="u2", data={"v": 2}, ttl=60)
    assert await state.tokens.get("h1") == TokenRecord(user_id="u2", data={"v": 2})
    assert await state.tokens.tokens_of("u1") == []
    assert await state.tokens.revoke_user("u1") == []
    assert await state.tokens.get("h1") is not None
