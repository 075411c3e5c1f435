"""Grouping helpers shared by the memory stores' aggregations."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Iterable
from typing import TypeVar

from grass.domain.epochs import Epoch
from grass.domain.periods import EpochTotal, Period, PeriodTotal, period_start, zone

R = TypeVar("R")


def by_period(
    rows: Iterable[R],
    at: Callable[[R], dt.datetime],
    value: Callable[[R], int],
    period: Period,
    tz: str,
) -> list[PeriodTotal]:
    tzinfo = zone(tz)
    sums: dict[dt.datetime, int] = {}
    for row in rows:
        start = period_start(at(row), period, tzinfo)
        sums[start] = sums.get(start, 0) + value(row)
    return [PeriodTotal(start=s, value=v) for s, v in sorted(sums.items())]


def by_epoch(
    rows: Iterable[R],
    at: Callable[[R], dt.datetime],
    value: Callable[[R], int],
    epochs: Iterable[Epoch],
) -> list[EpochTotal]:
    ordered = sorted(epochs, key=lambda e: e.start)
    starts = [e.start for e in ordered]
    sums: dict[int, int] = {}
    for row in rows:
        when = at(row)
        i = bisect.bisect_right(starts, when) - 1
        if i >= 0 and ordered[i].contains(when):
            number = ordered[i].number
            sums[number] = sums.get(number, 0) + value(row)
    return [EpochTotal(epoch=n, value=v) for n, v in sorted(sums.items())]
