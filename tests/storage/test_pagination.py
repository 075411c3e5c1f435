"""Cursor pagination: stable under concurrent inserts, strict about foreign cursors."""

from __future__ import annotations

import pytest

from grass.domain.pages import MAX_PAGE_SIZE, encode_cursor
from grass.storage.abc import InvalidPage
from tests.storage.conftest import add_user, at, make_notification


async def test_rows_added_between_pages_are_neither_repeated_nor_skipped(storage):
    user = await add_user(storage)
    original = [make_notification(user, created_at=at(i)) for i in range(10)]
    for n in original:
        await storage.notifications.add_notification(n)
    seen = []
    cursor = None
    step = 0
    while True:
        page = await storage.notifications.list_notifications(user.id, cursor=cursor, limit=3)
        seen.extend(page.items)
        # Newer rows (before the cursor) and older ones (after it) arrive meanwhile.
        await storage.notifications.add_notification(
            make_notification(user, created_at=at(100 + step))
        )
        await storage.notifications.add_notification(
            make_notification(user, created_at=at(-1 - step))
        )
        step += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    ids = [n.id for n in seen]
    assert len(ids) == len(set(ids))
    assert set(ids) >= {n.id for n in original}
    assert [n.created_at for n in seen] == sorted((n.created_at for n in seen), reverse=True)


async def test_exact_multiple_ends_with_no_cursor(storage):
    user = await add_user(storage)
    for i in range(4):
        await storage.notifications.add_notification(make_notification(user, created_at=at(i)))
    first = await storage.notifications.list_notifications(user.id, limit=2)
    second = await storage.notifications.list_notifications(
        user.id, cursor=first.next_cursor, limit=2
    )
    assert len(second.items) == 2
    assert second.next_cursor is None
    empty = await storage.notifications.list_notifications("nobody-xxxxxxxxxxxxxx", limit=2)
    assert empty.items == ()
    assert empty.next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "bm90IGpzb24",  # "not json"
        encode_cursor([1]),  # wrong arity for (created_at, id)
        encode_cursor(["x", "y"]),  # wrong types
        encode_cursor([None, None]),
    ],
)
async def test_foreign_cursors_are_refused(storage, cursor):
    user = await add_user(storage)
    with pytest.raises(InvalidPage):
        await storage.notifications.list_notifications(user.id, cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1])
async def test_limits_are_checked(storage, limit):
    with pytest.raises(InvalidPage):
        await storage.users.list_users(limit=limit)
    assert (await storage.users.list_users(limit=MAX_PAGE_SIZE)).items == ()
