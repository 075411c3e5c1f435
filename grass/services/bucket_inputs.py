"""What the bucket closer (grass.services.closer) reads to pay one bucket: its lines with the score
and device type each is paid at, its users' referral chains, the referees past the milestone, and
the milestone bonuses not paid yet."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import trio

from grass.domain import payouts as rules
from grass.domain.devices import DeviceType
from grass.domain.referrals import ReferralStatus
from grass.errors import sole_exception
from grass.services.scores import ScoreService
from grass.storage.earnings import EarningsStore
from grass.storage.payouts import ChainLink, KeyedPayout, LineScore, PayoutStore


async def read_bucket_inputs(
    payouts: PayoutStore,
    scores: ScoreService,
    start: dt.datetime,
    end: dt.datetime,
    rates: rules.Rates,
) -> tuple[
    tuple[list[rules.UptimeLine], list[rules.UptimeLine]],
    dict[str, tuple[ChainLink, ...]],
    set[str],
]:
    """The bucket's priced lines, its users' referral chains and the referees past the
    milestone, read side by side (on PostgreSQL, three queries on two cores).

    Uptime flushed between the reads can only be missed by one of them, and then it is in
    none of what this revision paid for: its close records the seconds seen before any
    read, so the next tick corrects the bucket."""
    lines: tuple[list[rules.UptimeLine], list[rules.UptimeLine]] = ([], [])
    chains: dict[str, tuple[ChainLink, ...]] = {}
    reached: set[str] = set()

    async def read_lines() -> None:
        nonlocal lines
        lines = await price_lines(payouts, scores, start, end, rates)

    async def read_chains() -> None:
        nonlocal chains
        chains = await payouts.bucket_chains(start)

    async def read_reached() -> None:
        nonlocal reached
        reached = await payouts.bucket_milestones(start, seconds=rates.milestone_seconds)

    try:
        async with trio.open_nursery() as nursery:
            for read in (read_lines, read_chains, read_reached):
                nursery.start_soon(read)
    except BaseExceptionGroup as group:
        # One read failed (the nursery cancelled the others): its error, with its type
        # (StorageUnavailable for a database that is down), not a group around it.
        raise sole_exception(group) from None
    return lines, chains, reached


async def price_lines(
    payouts: PayoutStore,
    scores: ScoreService,
    start: dt.datetime,
    end: dt.datetime,
    rates: rules.Rates,
) -> tuple[list[rules.UptimeLine], list[rules.UptimeLine]]:
    """The bucket's lines with the score and type they are paid at, and those of them
    priced now (never paid before: frozen by this revision)."""
    rows = await payouts.bucket_lines(start)
    missing = {line.device_id for line, how in rows if how is LineScore.MISSING}
    found = await scores.score_devices(missing, end) if missing else {}
    lines = []
    priced = []
    for line, how in rows:
        if how is LineScore.MISSING:
            score = found.get(line.device_id)
            # No score comes back only for a device that is gone (removed before a revision
            # priced its line): neither its score nor its type is known any more, so the
            # line is priced at score 0 and the lowest multiplier, and frozen so. Any
            # default above what the device could have scored would pay a removed device
            # more than a kept one.
            line = rules.UptimeLine(
                device_id=line.device_id,
                user_id=line.user_id,
                ip=line.ip,
                seconds=line.seconds,
                device_type=line.device_type if score is not None else _lowest(rates),
                score=0 if score is None else score.value,
            )
        lines.append(line)
        if how is not LineScore.FROZEN and line.seconds > 0:
            priced.append(line)
    return lines, priced


async def unpaid_milestones(
    earnings: EarningsStore,
    chains: Mapping[str, Sequence[ChainLink]],
    reached: set[str],
    rates: rules.Rates,
) -> list[KeyedPayout]:
    """Referees of the bucket, not yet qualified, whose uptime written so far (every
    bucket, every device) reached the milestone: counting beyond this bucket means late
    uptime in an earlier bucket can never hide a milestone reached in a later one."""
    level1 = {
        u: r.referrer_id
        for u, links in chains.items()
        for r in links
        if r.level == 1 and r.status is not ReferralStatus.QUALIFIED and u in reached
    }
    return [
        KeyedPayout(key=key, payout=payout)
        for key, payout in rules.milestone_payouts(level1, level1, rates)
        if await earnings.find_earning(key) is None
    ]


def _lowest(rates: rules.Rates) -> DeviceType:
    """The device type of the lowest multiplier (ties: the first in DeviceType's order)."""
    types = list(DeviceType)
    return min(types, key=lambda t: (rates.multipliers[t], types.index(t)))
