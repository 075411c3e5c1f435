"""Rows a store refuses for their content: every backend refuses what PostgreSQL cannot store
(text UTF-8 cannot encode, NUL) with InvalidValue, a RowRefused, writing nothing of the batch;
the store goes on working; messages never quote the value.

On memory such a row used to be stored, and every reply showing it failed (500) for good.
"""

from __future__ import annotations

import attrs
import pytest

from grass.domain.users import Profile
from grass.errors import (
    IntegrityViolation,
    InvalidValue,
    OwnedByAnother,
    RowRefused,
    StorageConflict,
)
from grass.storage.abc import Storage
from tests.storage.conftest import (
    add_user,
    delta,
    make_device,
    make_entry,
    make_notification,
    make_user,
)

BAD_TEXT = ["4\udfff", "\ud800", "a\x00b"]


def assert_quiet(error: InvalidValue) -> None:
    assert isinstance(error, RowRefused)
    assert error.http_status == 422
    for bad in BAD_TEXT:
        assert bad not in error.message
        assert bad not in repr(error.details)


@pytest.mark.parametrize("bad", BAD_TEXT)
async def test_a_device_batch_with_one_bad_row_writes_nothing(storage: Storage, bad: str):
    user = await add_user(storage)
    good = make_device(user)
    with pytest.raises(InvalidValue) as raised:
        await storage.devices.upsert_devices([good, make_device(user, version=bad)])
    assert_quiet(raised.value)
    assert await storage.devices.find_device(good.device_id) is None
    await storage.devices.upsert_devices([good])
    assert await storage.devices.get_device(good.device_id) == good


async def test_users_and_notifications_refuse_text_that_is_not_utf8(storage: Storage):
    with pytest.raises(InvalidValue) as raised:
        await storage.users.create_user(make_user(profile=Profile(display_name="Zoë\udfff")))
    assert_quiet(raised.value)
    user = await add_user(storage)
    with pytest.raises(InvalidValue):
        await storage.users.update_user(attrs.evolve(user, profile=Profile(display_name="\x00")))
    assert await storage.users.get_user(user.id) == user
    for payload in ({"device": {"name": "x\udfff"}}, {"\udfff": 1}, {"a": ["ok", "\x00"]}):
        with pytest.raises(InvalidValue):
            await storage.notifications.add_notification(make_notification(user, payload=payload))
    page = await storage.notifications.list_notifications(user.id)
    assert page.items == ()


async def test_refusals_for_the_row_are_row_refusals(storage: Storage):
    """What a batch writer may drop: the row is at fault, not the store."""
    user = await add_user(storage)
    other = await add_user(storage)
    theirs = make_device(other)
    await storage.devices.upsert_devices([theirs])
    with pytest.raises(OwnedByAnother) as raised:
        await storage.devices.upsert_devices([attrs.evolve(theirs, user_id=user.id)])
    assert isinstance(raised.value, StorageConflict)
    assert isinstance(raised.value, RowRefused)
    with pytest.raises(IntegrityViolation) as integrity:
        await storage.devices.upsert_devices([make_device(make_user())])
    assert isinstance(integrity.value, RowRefused)


@pytest.mark.parametrize("field", ["seconds", "rtt_sum_ms", "reconnects"])
async def test_an_uptime_delta_out_of_range_is_refused_alone(storage: Storage, field: str):
    """A number no column can hold (above 2**63 - 1) is the row's fault, on every backend:
    InvalidValue, so that the flusher drops that delta and writes the others."""
    user = await add_user(storage)
    device = make_device(user)
    await storage.devices.upsert_devices([device])
    with pytest.raises(InvalidValue) as raised:
        await storage.uptime.add_uptime([delta(device), delta(device, **{field: 2**63})])
    assert isinstance(raised.value, RowRefused)
    assert str(2**63) not in raised.value.message
    assert (await storage.uptime.uptime_stats()).seconds == 0
    await storage.uptime.add_uptime([delta(device)])
    assert (await storage.uptime.uptime_stats()).seconds == 60


async def test_an_earning_out_of_range_is_refused_and_the_batch_writes_nothing(storage: Storage):
    user = await add_user(storage)
    good = make_entry(user, amount=5)
    with pytest.raises(InvalidValue):
        await storage.earnings.insert_earnings([good, make_entry(user, amount=2**63)])
    assert await storage.earnings.find_earning(good.idempotency_key) is None
    await storage.earnings.insert_earnings([good, make_entry(user, amount=2**63 - 1)])
    assert (await storage.earnings.earnings_totals(user_id=user.id)).total == 2**63 + 4
