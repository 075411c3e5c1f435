"""NodeKeyStore: the keys a user's nodes authenticate with (hardening #13, finding 6)."""

from __future__ import annotations

import pytest

from grass.errors import IntegrityViolation, StorageConflict, StorageNotFound
from tests.storage.conftest import add_user, at, collect, make_node_key, make_user, sha


async def test_node_keys(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    keys = [make_node_key(user, created_at=at(i)) for i in range(3)]
    for key in keys:
        await storage.node_keys.create_node_key(key)
    assert await storage.node_keys.find_node_key(keys[1].key_hash) == keys[1]
    assert await storage.node_keys.find_node_key(sha()) is None
    with pytest.raises(StorageConflict):
        await storage.node_keys.create_node_key(make_node_key(user, key_hash=keys[0].key_hash))
    with pytest.raises(StorageConflict):
        await storage.node_keys.create_node_key(make_node_key(user, id=keys[0].id))
    with pytest.raises(IntegrityViolation):
        await storage.node_keys.create_node_key(make_node_key(make_user()))

    listed = await collect(lambda **kw: storage.node_keys.list_node_keys(user.id, **kw), limit=2)
    assert listed == keys[::-1]
    assert (await storage.node_keys.list_node_keys(other.id)).items == ()
    with pytest.raises(StorageNotFound):
        await storage.node_keys.revoke_node_key(other.id, keys[0].id, at(1))
    assert await storage.node_keys.count_live_node_keys(user.id) == 3
    revoked = await storage.node_keys.revoke_node_key(user.id, keys[0].id, at(1))
    assert revoked.revoked_at == at(1)
    # Found revoked: the caller refuses it.
    assert await storage.node_keys.find_node_key(keys[0].key_hash) == revoked
    assert await storage.node_keys.count_live_node_keys(user.id) == 2
    assert await storage.node_keys.count_live_node_keys(other.id) == 0
    again = await storage.node_keys.revoke_node_key(user.id, keys[0].id, at(2))
    assert again.revoked_at == at(1)


async def test_node_keys_go_with_their_user(storage):
    user = await add_user(storage)
    key = make_node_key(user)
    await storage.node_keys.create_node_key(key)
    await storage.users.delete_user(user.id)
    assert await storage.node_keys.find_node_key(key.key_hash) is None


async def test_a_unit_of_work_counts_and_creates_together(storage):
    user = await add_user(storage)
    async with storage.transaction() as tx:
        assert await tx.node_keys.count_live_node_keys(user.id) == 0
        await tx.node_keys.create_node_key(make_node_key(user))
    assert await storage.node_keys.count_live_node_keys(user.id) == 1

    async def rolled_back() -> None:
        async with storage.transaction() as tx:
            await tx.node_keys.create_node_key(make_node_key(user))
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await rolled_back()
    assert await storage.node_keys.count_live_node_keys(user.id) == 1
