"""When the bucket closer looks at which buckets (pure arithmetic on times; grass.services.closer).

A bucket is closed once it ended ``delay`` ago, and corrected for late uptime while it started
less than ``correction`` ago: the *window*. Summing the window's uptime every tick is too much
on a large network (a day of 100 000 devices takes 0.5 s), so each tick looks at the last two
ended buckets (the one to close, and the usual late uptime: sessions' last flushes) and at a
slice of the older part, in turn, sized so that every bucket is looked at about once per bucket
length: the *sweep*.
"""

from __future__ import annotations

import datetime as dt
import math

Range = tuple[dt.datetime, dt.datetime]  # [start, end)

_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def bucket_floor(at: dt.datetime, length: dt.timedelta) -> dt.datetime:
    """The start of the bucket holding ``at`` (buckets are counted from the Unix epoch)."""
    return _UNIX + (at - _UNIX) // length * length


def window(
    now: dt.datetime, *, length: dt.timedelta, delay: dt.timedelta, correction: dt.timedelta
) -> Range:
    """The buckets that ended ``delay`` ago and started less than ``correction`` ago."""
    until = bucket_floor(now - delay, length)
    since = bucket_floor(now - correction, length)
    return min(since, until), until


def sweep(
    span: Range, resume: dt.datetime | None, *, length: dt.timedelta, interval: dt.timedelta
) -> tuple[list[Range], dt.datetime]:
    """What one tick looks at in ``span`` (the window), and where the next tick resumes.

    ``resume`` None (a closer that just started, after buckets may have ended unseen): all of
    it. Otherwise the last two buckets and the next slice of the older ones, wrapping round.
    """
    since, until = span
    if resume is None:
        return [(since, until)], since
    recent = max(since, until - 2 * length)
    ranges = [(recent, until)] if recent < until else []
    ticks_per_bucket = max(1.0, length / interval)
    step = length * max(1, math.ceil(((recent - since) // length) / ticks_per_bucket))
    start = resume if since <= resume < recent else since
    end = min(recent, start + step)
    if start < end:
        ranges.append((start, end))
    return ranges, end
