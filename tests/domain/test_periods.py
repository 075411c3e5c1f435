"""Calendar periods in a timezone, and keyset cursors."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grass.domain import InvalidModel
from grass.domain.pages import InvalidPage, decode_cursor, encode_cursor, from_micros, micros
from grass.domain.periods import Period, next_period_start, period_start, period_starts

UTC = dt.UTC
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/Santiago",
]


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "period", "tz", "start"),
    [
        (utc(2024, 3, 6, 13, 45), Period.HOUR, "UTC", utc(2024, 3, 6, 13)),
        (utc(2024, 3, 6, 13, 45), Period.HOUR, "Asia/Kolkata", utc(2024, 3, 6, 13, 30)),
        (utc(2024, 3, 6, 13, 45), Period.DAY, "Asia/Tokyo", utc(2024, 3, 5, 15)),
        (utc(2024, 3, 6, 13, 45), Period.WEEK, "UTC", utc(2024, 3, 4)),
        (utc(2024, 3, 4, 3), Period.WEEK, "America/New_York", utc(2024, 2, 26, 5)),
        (utc(2024, 3, 1, 3), Period.MONTH, "America/New_York", utc(2024, 2, 1, 5)),
        # Europe/Paris switches to summer time on 31 March: the day is 23 hours long.
        (utc(2024, 3, 31, 20), Period.DAY, "Europe/Paris", utc(2024, 3, 30, 23)),
        (utc(2024, 4, 1, 20), Period.DAY, "Europe/Paris", utc(2024, 3, 31, 22)),
        # New York falls back on 3 November: the two 01:00 hours stay apart.
        (utc(2024, 11, 3, 5, 30), Period.HOUR, "America/New_York", utc(2024, 11, 3, 5)),
        (utc(2024, 11, 3, 6, 30), Period.HOUR, "America/New_York", utc(2024, 11, 3, 6)),
    ],
)
def test_period_start(at, period, tz, start):
    assert period_start(at, period, tz) == start


def test_dst_day_lengths_and_unknown_zone():
    assert next_period_start(utc(2024, 3, 30, 23), Period.DAY, "Europe/Paris") == utc(
        2024, 3, 31, 22
    )
    hours = list(
        period_starts(utc(2024, 11, 3, 4), utc(2024, 11, 3, 8), Period.HOUR, "America/New_York")
    )
    assert hours == [utc(2024, 11, 3, h) for h in (4, 5, 6, 7)]
    with pytest.raises(InvalidModel):
        period_start(utc(2024, 1, 1), Period.DAY, "Mars/Olympus")


@given(
    at=st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from(list(Period)),
    tz=st.sampled_from(ZONES),
)
def test_periods_tile_time(at, period, tz):
    start = period_start(at, period, tz)
    end = next_period_start(start, period, tz)
    assert start <= at < end
    assert period_start(start, period, tz) == start
    assert period_start(end, period, tz) == end
    assert period_start(end - dt.timedelta(microseconds=1), period, tz) == start
    assert start.utcoffset() == dt.timedelta(0)


@given(
    key=st.lists(st.one_of(st.text(max_size=30), st.integers(-(2**62), 2**62)), max_size=4),
)
def test_cursor_round_trip(key):
    cursor = encode_cursor(key)
    assert "=" not in cursor
    assert list(decode_cursor(cursor, [type(k) for k in key])) == key


def test_cursor_rejects_foreign_input():
    for bad in ["%%", "", encode_cursor([1, "a"])]:
        with pytest.raises(InvalidPage):
            decode_cursor(bad, [str, int])


@given(st.datetimes(timezones=st.just(UTC)))
def test_micros_round_trip(at):
    assert from_micros(micros(at)) == at
