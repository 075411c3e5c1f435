from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import attrs

from grass.domain.notifications import Notification
from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.storage.memory._db import Scope, paginate


class MemoryNotificationStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_notification(self, notification: Notification) -> None:
        async with self._scope.op() as db:
            db.require_user(notification.user_id)
            db.notifications.insert(notification)

    async def list_notifications(
        self,
        user_id: str,
        *,
        unread_only: bool = False,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Notification]:
        async with self._scope.op() as db:
            rows = [
                n
                for n in db.notifications.group("user", user_id)
                if not unread_only or n.read_at is None
            ]
            return paginate(
                rows,
                lambda n: (micros(n.created_at), n.id),
                (int, str),
                descending=True,
                cursor=cursor,
                limit=limit,
            )

    async def mark_read(self, user_id: str, ids: Collection[str], at: dt.datetime) -> int:
        async with self._scope.op() as db:
            wanted = set(ids)
            unread = [
                n
                for n in db.notifications.group("user", user_id)
                if n.id in wanted and n.read_at is None
            ]
            for n in unread:
                db.notifications.save(attrs.evolve(n, read_at=at))
            return len(unread)

    async def mark_all_read(self, user_id: str, at: dt.datetime) -> int:
        async with self._scope.op() as db:
            unread = [n for n in db.notifications.group("user", user_id) if n.read_at is None]
            for n in unread:
                db.notifications.save(attrs.evolve(n, read_at=at))
            return len(unread)

    async def count_unread(self, user_id: str) -> int:
        async with self._scope.op() as db:
            return sum(1 for n in db.notifications.group("user", user_id) if n.read_at is None)

    async def delete_notifications_before(self, before: dt.datetime) -> int:
        async with self._scope.op() as db:
            old = [n.id for n in db.notifications.rows() if n.created_at < before]
            for notification_id in old:
                db.notifications.delete(notification_id)
            return len(old)
