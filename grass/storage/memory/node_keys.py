"""NodeKeyStore in memory (see grass.storage.node_keys)."""

from __future__ import annotations

import datetime as dt

import attrs

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.users import NodeKey
from grass.storage.memory._db import Scope, found, paginate


class MemoryNodeKeyStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_node_key(self, key: NodeKey) -> None:
        async with self._scope.op() as db:
            db.require_user(key.user_id)
            db.node_keys.insert(key)

    async def count_live_node_keys(self, user_id: str) -> int:
        async with self._scope.op() as db:  # a unit of work holds the storage's lock
            return sum(1 for k in db.node_keys.group("user", user_id) if k.revoked_at is None)

    async def find_node_key(self, key_hash: str) -> NodeKey | None:
        async with self._scope.op() as db:
            return db.node_keys.lookup("hash", key_hash)

    async def list_node_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[NodeKey]:
        async with self._scope.op() as db:
            return paginate(
                db.node_keys.group("user", user_id),
                lambda k: (micros(k.created_at), k.id),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def revoke_node_key(self, user_id: str, key_id: str, at: dt.datetime) -> NodeKey:
        async with self._scope.op() as db:
            key = db.node_keys.get(key_id)
            key = found(
                key if key is not None and key.user_id == user_id else None, "node key", key_id
            )
            if key.revoked_at is None:
                key = attrs.evolve(key, revoked_at=at)
                db.node_keys.save(key)
            return key
