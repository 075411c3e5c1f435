"""Property test: PostgreSQL reads like memory whatever part of the uptime is merged.

Random flushes (devices reported under changing owners, several IPs and buckets) go to both
backends; between flushes the PostgreSQL deltas are merged or left pending at random. Every
uptime view must then give memory's answer.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grass.domain.epochs import Epoch
from grass.domain.periods import Period
from grass.domain.uptime import UptimeDelta, UptimeStats
from grass.storage.postgres.storage import PostgresStorage
from grass.storage.postgres.uptime_flush import merge_uptime
from tests.storage.conftest import BACKENDS, make_device, make_user

START = dt.datetime(2024, 3, 30, tzinfo=dt.UTC)  # the EU moves its clocks on 31 March
IPS = ["203.0.113.1", "2001:db8::1"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu"]

row = st.tuples(
    st.integers(0, 2),  # device
    st.integers(0, 1),  # the user the delta names (the device's owner may change)
    st.integers(0, 72),  # bucket hour
    st.sampled_from(IPS),
    st.integers(0, 3600),
    st.integers(0, 4),  # rtt samples
    st.integers(0, 2),  # reconnects
)
flushes = st.lists(st.tuples(st.lists(row, max_size=12), st.booleans()), min_size=1, max_size=5)


async def _all_buckets(storage, start):
    items, cursor = [], None
    while True:
        page = await storage.uptime.list_buckets(start, cursor=cursor, limit=3)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def _views(storage, users, devices, period, tz):
    uptime = storage.uptime
    starts = await uptime.bucket_starts()
    cut = START + dt.timedelta(hours=36)
    views = {
        "starts": starts,
        "buckets": [await _all_buckets(storage, s) for s in starts],
        "total": await uptime.uptime_stats(),
        "since": await uptime.uptime_stats(since=cut),
        "by_user": await uptime.uptime_by_user([u.id for u in users]),
        "by_ip": await uptime.uptime_by_ip(until=cut),
    }
    for u in users:
        views[f"stats {u.id}"] = await uptime.uptime_stats(user_id=u.id, ip=IPS[0])
        views[f"devices {u.id}"] = await uptime.uptime_by_device(u.id)
        views[f"ips {u.id}"] = await uptime.uptime_by_ip(user_id=u.id)
        views[f"series {u.id}"] = await uptime.uptime_series(u.id, period=period, tz=tz)
        views[f"epochs {u.id}"] = await uptime.uptime_by_epoch(u.id)
    for d in devices:
        views[f"device {d.device_id}"] = await uptime.uptime_stats(device_id=d.device_id)
    return views


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=flushes, period=st.sampled_from(list(Period)), tz=st.sampled_from(ZONES))
async def test_uptime_reads_like_memory_merged_or_pending(request, batches, period, tz):
    users = [make_user() for _ in range(2)]
    devices = [make_device(users[i % 2]) for i in range(3)]
    epochs = [
        Epoch(
            number=n,
            name=f"E{n}",
            start=START + n * dt.timedelta(days=1),
            end=START + (n + 1) * dt.timedelta(days=1),
        )
        for n in range(2)
    ]
    async with BACKENDS["memory"](request) as memory, BACKENDS["postgres"](request) as pg:
        assert isinstance(pg, PostgresStorage)
        for storage in (memory, pg):
            for u in users:
                await storage.users.create_user(u)
            for d in devices:
                await storage.devices.create_device(d)
            for e in epochs:
                await storage.epochs.create_epoch(e)
        for rows, merge in batches:
            deltas = [
                UptimeDelta(
                    device_id=devices[d].device_id,
                    user_id=users[u].id,
                    ip=ip,
                    bucket_start=START + dt.timedelta(hours=h),
                    stats=UptimeStats(
                        seconds=s, rtt_count=r, rtt_sum_ms=r * 11, rtt_max_ms=r * 5, reconnects=c
                    ),
                )
                for d, u, h, ip, s, r, c in rows
            ]
            assert await memory.uptime.add_uptime(deltas) == await pg.uptime.add_uptime(deltas)
            if merge:
                await merge_uptime(pg.db)
        assert await _views(pg, users, devices, period, tz) == await _views(
            memory, users, devices, period, tz
        )


pytestmark = pytest.mark.usefixtures("postgres_dsn")
