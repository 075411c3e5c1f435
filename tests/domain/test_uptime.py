"""Uptime accrual of one session: buckets, caps, fractions, close."""

from __future__ import annotations

import datetime as dt
import uuid

from grass.domain.devices import DeviceStatus, DeviceType
from grass.domain.uptime import Accrual
from grass.ids import short_id

HOUR = 3600
T0 = 1_700_002_800.0  # a bucket boundary (divisible by 3600)


def accrual(
    now: float = T0, *, cap: float = 180.0, user_id: str | None = None, cls=Accrual, **kw
) -> Accrual:
    return cls(
        device_id=kw.pop("device_id", str(uuid.uuid4())),
        user_id=user_id or short_id(),
        ip=kw.pop("ip", "203.0.113.9"),
        device_type=DeviceType.EXTENSION,
        version=kw.pop("version", "4.0"),
        user_agent="ua",
        now=now,
        bucket_seconds=kw.pop("bucket_seconds", HOUR),
        cap=cap,
        **kw,
    )


def seconds_by_bucket(deltas) -> dict[float, int]:
    return {d.bucket_start.timestamp(): d.stats.seconds for d in deltas}


def test_seconds_between_heartbeats_split_across_buckets():
    a = accrual(T0 + HOUR - 100)
    a.heartbeat(T0 + HOUR - 40)  # 60 s, all in the first bucket
    a.heartbeat(T0 + HOUR + 60)  # 40 s before the boundary, 60 s after
    assert seconds_by_bucket(a.take()) == {T0: 100, T0 + HOUR: 60}
    assert a.take() == []  # taking zeroes


def test_a_gap_is_capped_at_the_heartbeat_timeout():
    a = accrual(T0, cap=180)
    a.heartbeat(T0 + 500)
    assert seconds_by_bucket(a.take()) == {T0: 180}


def test_fractions_are_kept_for_the_next_take():
    a = accrual(T0)
    a.heartbeat(T0 + 10.6)
    assert seconds_by_bucket(a.take()) == {T0: 10}
    a.heartbeat(T0 + 20.0)
    assert seconds_by_bucket(a.take()) == {T0: 10}  # 0.6 + 9.4


def test_nothing_accrues_after_close_and_a_short_bucket_length_works():
    a = accrual(T0, bucket_seconds=60, cap=1000)
    a.heartbeat(T0 + 150)  # 60 + 60 + 30 over three buckets
    a.close()
    a.heartbeat(T0 + 300)
    assert seconds_by_bucket(a.take()) == {T0: 60, T0 + 60: 60, T0 + 120: 30}
    assert a.device_row().status is DeviceStatus.OFFLINE
    assert a.device_row().last_seen == dt.datetime.fromtimestamp(T0 + 150, dt.UTC)
