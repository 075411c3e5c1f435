"""NodeKeyStore on PostgreSQL (migration 0010; see grass.storage.node_keys)."""

from __future__ import annotations

import datetime as dt

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.users import NodeKey
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import after_time_text, page_of, require
from grass.storage.postgres.scope import Scope

__all__ = ["PgNodeKeyStore"]

_COLUMNS = "id, user_id, name, key_hash, prefix, created_at, revoked_at"


def _node_key(row: Record) -> NodeKey:
    return NodeKey(**{name: row[name] for name in _COLUMNS.replace(" ", "").split(",")})


class PgNodeKeyStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def create_node_key(self, key: NodeKey) -> None:
        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO node_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                key.id,
                key.user_id,
                key.name,
                key.key_hash,
                key.prefix,
                key.created_at,
                key.revoked_at,
            )

        await self._scope.write(insert)

    async def count_live_node_keys(self, user_id: str) -> int:
        async def count(conn: Connection) -> int:
            await conn.execute("SELECT 1 FROM users WHERE id = $1::text FOR NO KEY UPDATE", user_id)
            live: int = await conn.fetchval(
                "SELECT count(*) FROM node_keys WHERE user_id = $1::text AND revoked_at IS NULL",
                user_id,
            )
            return live

        return await self._scope.write(count)

    async def find_node_key(self, key_hash: str) -> NodeKey | None:
        async def find(conn: Connection) -> Record | None:
            return await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM node_keys WHERE key_hash = $1::text", key_hash
            )

        # The primary: a key revoked a moment ago must not let a node in from a lagging replica.
        row = await self._scope.read_primary(find)
        return None if row is None else _node_key(row)

    async def list_node_keys(
        self, user_id: str, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page[NodeKey]:
        before_at, before_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM node_keys WHERE user_id = $1::text"
                ' AND ($2::timestamptz IS NULL OR (created_at, id COLLATE "C") < ($2, $3::text))'
                ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $4',
                user_id,
                before_at,
                before_id,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, _node_key, lambda k: (micros(k.created_at), k.id))

    async def revoke_node_key(self, user_id: str, key_id: str, at: dt.datetime) -> NodeKey:
        async def revoke(conn: Connection) -> Record:
            row = await conn.fetchrow(
                "UPDATE node_keys SET revoked_at = COALESCE(revoked_at, $3)"
                f" WHERE id = $2::text AND user_id = $1::text RETURNING {_COLUMNS}",
                user_id,
                key_id,
                at,
            )
            return require(row, "node key", key_id)

        return _node_key(await self._scope.write(revoke))
