"""NotificationStore on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from grass.domain.notifications import Notification, NotificationType, Priority
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import after_time_text, page_of, row_count
from grass.storage.postgres.scope import Scope

__all__ = ["PgNotificationStore"]

_COLUMNS = "id, user_id, type, priority, payload, created_at, read_at"


def _notification(row: Record) -> Notification:
    return Notification(
        id=row["id"],
        user_id=row["user_id"],
        type=NotificationType(row["type"]),
        priority=Priority(row["priority"]),
        payload=row["payload"],
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


class PgNotificationStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_notification(self, notification: Notification) -> None:
        n = notification

        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO notifications ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                n.id,
                n.user_id,
                n.type.value,
                n.priority.value,
                n.payload,
                n.created_at,
                n.read_at,
            )

        await self._scope.write(insert)

    async def list_notifications(
        self,
        user_id: str,
        *,
        unread_only: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Notification]:
        before_at, before_id = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM notifications WHERE user_id = $1::text"
                " AND (NOT $2::boolean OR read_at IS NULL)"
                ' AND ($3::timestamptz IS NULL OR (created_at, id COLLATE "C") < ($3, $4::text))'
                ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $5',
                user_id,
                unread_only,
                before_at,
                before_id,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, _notification, lambda n: (micros(n.created_at), n.id))

    async def mark_read(self, user_id: str, ids: Collection[str], at: dt.datetime) -> int:
        wanted = sorted(set(ids))
        if not wanted:
            return 0

        async def update(conn: Connection) -> str:
            return await conn.execute(
                "UPDATE notifications SET read_at = $3 WHERE user_id = $1::text"
                " AND id = ANY($2::text[]) AND read_at IS NULL",
                user_id,
                wanted,
                at,
            )

        return row_count(await self._scope.write(update))

    async def mark_all_read(self, user_id: str, at: dt.datetime) -> int:
        async def update(conn: Connection) -> str:
            return await conn.execute(
                "UPDATE notifications SET read_at = $2 WHERE user_id = $1::text"
                " AND read_at IS NULL",
                user_id,
                at,
            )

        return row_count(await self._scope.write(update))

    async def count_unread(self, user_id: str) -> int:
        async def count(conn: Connection) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE user_id = $1::text"
                    " AND read_at IS NULL",
                    user_id,
                )
            )

        return await self._scope.read_primary(count)

    async def delete_notifications_before(self, before: dt.datetime) -> int:
        async def delete(conn: Connection) -> str:
            return await conn.execute("DELETE FROM notifications WHERE created_at < $1", before)

        return row_count(await self._scope.write(delete))
