"""NotificationStore."""

from __future__ import annotations

import pytest

from grass.domain.notifications import Priority
from grass.errors import IntegrityViolation, StorageConflict
from tests.storage.conftest import add_user, at, collect, make_notification, make_user


async def test_round_trip_and_errors(storage):
    user = await add_user(storage)
    n = make_notification(user, priority=Priority.HIGH, payload={"a": [1, 2], "b": {"c": None}})
    await storage.notifications.add_notification(n)
    assert (await storage.notifications.list_notifications(user.id)).items == (n,)
    with pytest.raises(StorageConflict):
        await storage.notifications.add_notification(n)
    with pytest.raises(IntegrityViolation):
        await storage.notifications.add_notification(make_notification(make_user()))


async def test_list_read_and_cleanup(storage):
    user = await add_user(storage)
    other = await add_user(storage)
    mine = [make_notification(user, created_at=at(i // 2)) for i in range(6)]
    theirs = make_notification(other)
    for n in [*mine, theirs]:
        await storage.notifications.add_notification(n)
    listed = await collect(
        lambda **kw: storage.notifications.list_notifications(user.id, **kw), limit=4
    )
    assert listed == sorted(mine, key=lambda n: (n.created_at, n.id), reverse=True)
    assert await storage.notifications.count_unread(user.id) == 6

    marked = await storage.notifications.mark_read(
        user.id, [mine[0].id, mine[1].id, theirs.id, "unknown-id-xxxxxxxxxx"], at(9)
    )
    assert marked == 2
    assert await storage.notifications.mark_read(user.id, [mine[0].id], at(10)) == 0
    assert await storage.notifications.count_unread(other.id) == 1
    unread = await storage.notifications.list_notifications(user.id, unread_only=True)
    assert {n.id for n in unread.items} == {n.id for n in mine[2:]}
    first = [
        n
        for n in (await storage.notifications.list_notifications(user.id)).items
        if n.id == mine[0].id
    ]
    assert first[0].read_at == at(9)

    assert await storage.notifications.mark_all_read(user.id, at(11)) == 4
    assert await storage.notifications.count_unread(user.id) == 0
    assert await storage.notifications.delete_notifications_before(at(1)) == 3
    assert len((await storage.notifications.list_notifications(user.id)).items) == 4
