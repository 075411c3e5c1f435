"""The earnings and referral services over a closed bucket, on every backend."""

from __future__ import annotations

import datetime as dt

import pytest

from grass.domain.earnings import EarningSource
from grass.domain.referrals import ReferralStatus
from grass.errors import InvalidInput
from grass.services.earnings import EarningsService, HistoryPeriod
from grass.services.referrals import ReferralService
from tests.engine.helpers import engine, engine_config
from tests.engine.test_closer import CLOSE_AT, EXPECTED, world
from tests.storage.conftest import T0


async def test_totals_series_breakdown_and_epochs(storage):
    (a, _b, _c), devices = await world(storage)
    config = engine_config(epoch_seconds=24 * 3600, epoch_genesis=int(T0.timestamp()))
    async with engine(storage, config, CLOSE_AT) as e:
        await e.closer.tick()
        service = EarningsService(storage, e.epochs, e.clock)
        totals = await service.totals(a.id, tz="Europe/Paris")
        assert totals.all_time.total == totals.this_epoch.total == EXPECTED[0]
        assert totals.all_time.by_source[EarningSource.REFERRAL] == 232_500 + 38_750
        # In Paris, T0 (00:00 UTC) is 01:00 on the same day: "today" holds it.
        assert totals.today.total == EXPECTED[0]
        assert totals.today_start == T0 - dt.timedelta(hours=1)

        hours = await service.series(
            a.id,
            HistoryPeriod.HOUR,
            since=T0 - dt.timedelta(hours=2),
            until=T0 + dt.timedelta(hours=2),
        )
        assert [(p.points, p.uptime_seconds) for p in hours] == [
            (0, 0),
            (0, 0),
            (EXPECTED[0], 5_400),
            (0, 0),
        ]
        epochs = await service.series(a.id, HistoryPeriod.EPOCH)
        assert [p.points for p in epochs] == [EXPECTED[0]]
        with pytest.raises(InvalidInput):
            await service.series(a.id, HistoryPeriod.DAY, tz="Mars/Olympus")

        parts = await service.breakdown(a.id)
        assert parts.points_by_device == {
            devices[0].device_id: 1_233_333,
            devices[1].device_id: 616_667,
        }
        assert parts.uptime_by_ip == {"198.51.100.1": 5_400}
        levels = await service.referral_levels(a.id)
        assert [(t.level, t.amount, t.referees) for t in levels] == [
            (1, 232_500, 1),
            (2, 38_750, 1),
            (3, 0, 0),
        ]
        listed = await service.epochs(a.id)
        assert [(x.epoch.number, x.points, x.uptime_seconds) for x in listed.items] == [
            (0, EXPECTED[0], 5_400)
        ]


async def test_referral_list_rewards_and_rank(storage):
    (a, b, c), _ = await world(storage)
    config = engine_config(milestone_hours=1, referral_ranks=("Bronze:0", "Silver:1", "Gold:3"))
    async with engine(storage, config, CLOSE_AT) as e:
        await e.closer.tick()
        service = ReferralService(storage, lambda: config)
        page = await service.list(a.id)
        got = [
            (v.referral.referee_id, v.referral.level, v.referral.status, v.rewards)
            for v in page.items
        ]
        assert sorted(got) == sorted(
            [
                (b.id, 1, ReferralStatus.QUALIFIED, 232_500),
                (c.id, 2, ReferralStatus.ACTIVE, 38_750),
            ]
        )
        summary = await service.summary(a.id)
        assert (summary.counts, summary.qualified) == ({1: 1, 2: 1, 3: 0}, 1)
        assert (summary.rank.name, summary.next_rank.name) == ("Silver", "Gold")
        assert summary.total_rewards == 232_500 + 38_750
