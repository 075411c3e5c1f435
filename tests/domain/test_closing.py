"""When the closer looks at which buckets: the window, and the sweep that covers it in turn."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from grass.domain import closing

T0 = dt.datetime(2024, 3, 4, 0, 0, 7, tzinfo=dt.UTC)


def buckets(ranges: list[closing.Range], length: dt.timedelta) -> set[dt.datetime]:
    out = set()
    for start, end in ranges:
        at = start
        while at < end:
            out.add(at)
            at += length
    return out


def test_the_window_by_hand():
    hour = dt.timedelta(hours=1)
    now = dt.datetime(2024, 3, 4, 10, 5, tzinfo=dt.UTC)
    delay, correction = dt.timedelta(minutes=10), dt.timedelta(hours=3)
    since, until = closing.window(now, length=hour, delay=delay, correction=correction)
    # 10:05 - 10 min = 09:55: the 08:00 bucket is the last that ended 10 min ago.
    assert (since, until) == (now.replace(hour=7, minute=0), now.replace(hour=9, minute=0))
    ranges, resume = closing.sweep((since, until), None, length=hour, interval=hour)
    assert (ranges, resume) == ([(since, until)], since)
    assert closing.bucket_floor(now, hour) == now.replace(minute=0)


lengths = st.integers(1, 120).map(lambda m: dt.timedelta(minutes=m))
intervals = st.integers(10, 7200).map(lambda s: dt.timedelta(seconds=s))


@settings(deadline=None)
@given(lengths, intervals, st.integers(0, 200), st.integers(0, 10_000))
def test_a_standing_window_is_covered_within_a_bucket_length_of_ticks(length, interval, n, shift):
    since = closing.bucket_floor(T0, length) - n * length
    until = closing.bucket_floor(T0, length) + dt.timedelta(seconds=shift) // length * length
    span = (since, until)
    ranges, resume = closing.sweep(span, None, length=length, interval=interval)
    assert buckets(ranges, length) == buckets([span], length)
    seen: set[dt.datetime] = set()
    for _ in range(math.ceil(length / interval) + 1):
        ranges, resume = closing.sweep(span, resume, length=length, interval=interval)
        assert all(since <= a < b <= until for a, b in ranges)
        # The last two buckets, every tick.
        assert buckets([(max(since, until - 2 * length), until)], length) <= buckets(ranges, length)
        seen |= buckets(ranges, length)
    assert seen == buckets([span], length)


@settings(deadline=None)
@given(lengths, intervals, st.integers(1, 100), st.integers(0, 3600))
def test_as_time_goes_by_every_bucket_is_looked_at(length, interval, window_buckets, offset):
    delay = dt.timedelta(minutes=10)
    correction = window_buckets * length + delay + length
    now = T0 + dt.timedelta(seconds=offset)
    resume = closing.sweep(
        closing.window(now, length=length, delay=delay, correction=correction),
        None,
        length=length,
        interval=interval,
    )[1]
    ticks = math.ceil(length / interval) + 2
    seen: set[dt.datetime] = set()
    windows = []
    for _ in range(ticks):
        now += interval
        span = closing.window(now, length=length, delay=delay, correction=correction)
        windows.append(buckets([span], length))
        ranges, resume = closing.sweep(span, resume, length=length, interval=interval)
        seen |= buckets(ranges, length)
    # A bucket in the window all along was looked at.
    assert set.intersection(*windows) <= seen
