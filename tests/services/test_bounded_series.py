"""A series request's work is bounded before it starts (hardening #13, finding 4): the point
count is known from the range and the period before any period is walked, so a range of a
century answers 400 at once instead of freezing the server while the axis is built."""

from __future__ import annotations

import datetime as dt

import pytest

from grass.domain import periods
from grass.services.earnings import MAX_POINTS, EarningsService, HistoryPeriod, InvalidRange
from grass.services.epochs import EpochService
from tests.engine.helpers import engine_config
from tests.storage.conftest import T0, add_user

HOUR = dt.timedelta(hours=1)
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class WalkTooLong(AssertionError):
    pass


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the periods walked; a walk past the limit is the bug itself, so it fails there
    (the old code walked every hour of the range: millions for a century)."""
    walked = [0]
    real = periods.next_period_start

    def counted(*args, **kwargs):
        walked[0] += 1
        if walked[0] > MAX_POINTS + 2:
            raise WalkTooLong(f"walked more than {MAX_POINTS + 2} periods")
        return real(*args, **kwargs)

    monkeypatch.setattr(periods, "next_period_start", counted)
    return walked


def service(storage, now: dt.datetime = T0) -> EarningsService:
    config = engine_config(epoch_seconds=3600, epoch_genesis=int(T0.timestamp()))
    return EarningsService(storage, EpochService(storage, None, lambda: config), lambda: now)


@pytest.mark.parametrize("period", [HistoryPeriod.HOUR, HistoryPeriod.DAY, HistoryPeriod.WEEK])
@pytest.mark.parametrize("tz", ["UTC", "Australia/Lord_Howe", "America/New_York"])
async def test_a_range_with_too_many_points_is_refused_before_it_is_walked(
    storage, steps, period, tz
):
    user = await add_user(storage)
    since = EARLIEST if period is not HistoryPeriod.HOUR else T0 - 400 * 24 * HOUR
    with pytest.raises(InvalidRange, match="at most"):
        await service(storage).series(user.id, period, tz=tz, since=since, until=T0)
    assert steps[0] == 0  # the span alone decided


@pytest.mark.parametrize("tz", ["UTC", "Australia/Lord_Howe", "America/New_York"])
async def test_the_limit_is_exact_and_the_walk_stops_one_point_past_it(storage, steps, tz):
    user = await add_user(storage)
    earnings = service(storage)
    start = periods.period_start(T0, periods.Period.HOUR, tz)
    fits = await earnings.series(
        user.id, HistoryPeriod.HOUR, tz=tz, since=start, until=start + MAX_POINTS * HOUR
    )
    # A DST change inside the span moves a point or two; the count is exact either way.
    assert abs(len(fits) - MAX_POINTS) <= 2
    steps[0] = 0
    # Just past the limit for the arithmetic (ambiguous within a DST change): walked, and the
    # walk stops one past the limit.
    with pytest.raises(InvalidRange, match="at most"):
        await earnings.series(
            user.id, HistoryPeriod.HOUR, tz=tz, since=start, until=start + 2 * MAX_POINTS * HOUR
        )
    assert steps[0] <= MAX_POINTS + 1


@pytest.mark.parametrize("period", list(HistoryPeriod))
@pytest.mark.parametrize(
    ("since", "until"),
    [
        (dt.datetime(1, 1, 1, tzinfo=dt.UTC), None),
        (dt.datetime(1900, 1, 1, tzinfo=dt.UTC), None),
        (None, dt.datetime(1, 1, 2, tzinfo=dt.UTC)),
        (dt.datetime(9999, 12, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, tzinfo=dt.UTC)),
        (T0, dt.datetime(9999, 12, 31, tzinfo=dt.UTC)),
    ],
)
async def test_times_out_of_range_are_a_clear_400_not_an_overflow(
    storage, steps, period, since, until
):
    user = await add_user(storage)
    with pytest.raises(InvalidRange, match="times must be"):
        await service(storage).series(
            user.id, period, tz="Pacific/Kiritimati", since=since, until=until
        )
    with pytest.raises(InvalidRange, match="times must be"):
        await service(storage).breakdown(user.id, since=since, until=until)
    assert steps[0] == 0


async def test_epochs_off_the_hour_are_read_one_by_one_within_a_smaller_limit(storage):
    """Epochs that do not fall on the hour cost two queries each: 2 200 of them were 4 400
    queries for one request."""
    config = engine_config(
        bucket_seconds=60, epoch_seconds=25 * 60, epoch_genesis=int(T0.timestamp())
    )
    epochs = EpochService(storage, None, lambda: config)
    now = T0 + 1000 * dt.timedelta(minutes=25)
    earnings = EarningsService(storage, epochs, lambda: now)
    user = await add_user(storage)
    with pytest.raises(InvalidRange, match="at most 120 epochs"):
        await earnings.series(user.id, HistoryPeriod.EPOCH, since=T0)
    points = await earnings.series(
        user.id, HistoryPeriod.EPOCH, since=now - 100 * dt.timedelta(minutes=25)
    )
    assert len(points) == 101
