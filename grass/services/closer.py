"""The bucket closer (DESIGN §5): pays each closed uptime bucket, once, then hands it to the ledger.

One pass (:meth:`BucketCloser.tick`), on one instance at a time (the job lock):

1. closes whose entries did not all reach the ledger (a crash after step 3 below) are handed
   to the ledger again;
2. every bucket that ended at least ``closer.delay`` ago and holds uptime is closed, oldest
   first; a bucket already closed whose uptime grew since (late uptime) gets a correction:
   a new *revision* paying only what is still owed (:func:`grass.domain.payouts.top_up`);
3. per bucket: compute the targets (uptime shares, referral credits, milestone bonuses),
   subtract what the bucket's entries already paid, write the rest and the close record in
   one atomic call (``record_payouts``), update referral statuses, credit the ledger, mark the
   close credited;
4. epochs whose end is past and whose buckets are all closed are closed (totals frozen) and
   settled on the ledger.

Crash safety: step 3's write is atomic and its keys name bucket, revision and recipient, so a
re-run after a crash before it pays everything, and after it pays nothing again (the targets
minus what was paid is zero) and only finishes the ledger hand-over. ``step_hook`` lets tests
stop the closer between any two steps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import trio

from grass import logs
from grass.config import Config
from grass.domain import payouts as rules
from grass.domain.devices import DeviceType
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.referrals import Referral, ReferralStatus
from grass.ledger.abc import AlreadySettled, Credit, Ledger
from grass.services.epochs import EpochService
from grass.services.scores import ScoreService
from grass.storage.abc import EarningsStore, ReferralStore, UptimeStore
from grass.storage.payouts import BucketClose, JobLock, KeyedPayout, PayoutStore

log = logs.get(__name__)

JOB = "bucket-closer"
STEPS = ("recorded", "statuses", "ledger", "credited")
LEDGER_CHUNK = 10_000

StepHook = Callable[[str, dt.datetime], Awaitable[None]]


class CloserStores(Protocol):
    @property
    def uptime(self) -> UptimeStore: ...
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def referrals(self) -> ReferralStore: ...
    @property
    def payouts(self) -> PayoutStore: ...


def rates_of(config: Config) -> rules.Rates:
    r = config.rates
    return rules.Rates(
        base_rate=r.base_rate,
        multipliers={
            DeviceType.EXTENSION: rules.exact(r.multiplier_extension),
            DeviceType.COMMUNITY: rules.exact(r.multiplier_community),
            DeviceType.DESKTOP: rules.exact(r.multiplier_desktop),
            DeviceType.ANDROID: rules.exact(r.multiplier_android),
        },
        referral=(
            rules.exact(r.referral_level1),
            rules.exact(r.referral_level2),
            rules.exact(r.referral_level3),
        ),
        milestone_seconds=r.milestone_hours * rules.SECONDS_PER_HOUR,
        milestone_referee_bonus=r.milestone_referee_bonus,
        milestone_referrer_bonus=r.milestone_referrer_bonus,
    )


class BucketCloser:
    def __init__(
        self,
        stores: CloserStores,
        ledger: Ledger,
        scores: ScoreService,
        epochs: EpochService,
        lock: JobLock,
        config: Callable[[], Config],
        clock: Callable[[], dt.datetime],
        *,
        step_hook: StepHook | None = None,
    ) -> None:
        self._stores = stores
        self._ledger = ledger
        self._scores = scores
        self._epochs = epochs
        self._lock = lock
        self._config = config
        self._clock = clock
        self.step_hook = step_hook
        self.closed = 0  # revisions written by this process

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._config().closer.interval)
            try:
                await self.tick()
            except Exception as exc:  # storage or ledger down: the next tick resumes
                log.warning("bucket closer failed; retrying next interval", error=str(exc))

    async def tick(self) -> bool:
        """One pass if this instance holds the job; False when another instance does."""
        async with self._lock.hold(JOB) as held:
            if not held:
                return False
            now = self._clock()
            for close in await self._stores.payouts.uncredited():
                await self._finish(close)
            for start, revision, seconds in await self._due(now):
                await self.close_bucket(start, revision, seconds, now)
            await self._epochs.close_due(now, self._all_closed)
            return True

    async def _due(self, now: dt.datetime) -> list[tuple[dt.datetime, int, int]]:
        config = self._config()
        length = dt.timedelta(seconds=config.rates.bucket_seconds)
        until = _bucket_floor(now - dt.timedelta(seconds=config.closer.delay), length) - length
        since = until - length * config.closer.correction_buckets
        until += length  # exclusive: the last bucket that has ended `delay` ago
        seconds = await self._stores.payouts.bucket_seconds(since=since, until=until)
        closes = {
            c.bucket_start: c
            for c in await self._stores.payouts.list_closes(since=since, until=until)
        }
        due = []
        for start in sorted(seconds):
            close = closes.get(start)
            if close is None:
                due.append((start, 0, seconds[start]))
            elif seconds[start] > close.seconds:
                due.append((start, close.revision + 1, seconds[start]))
        return due

    async def _all_closed(self, since: dt.datetime, until: dt.datetime) -> bool:
        seconds = await self._stores.payouts.bucket_seconds(since=since, until=until)
        closes = {
            c.bucket_start: c
            for c in await self._stores.payouts.list_closes(since=since, until=until)
        }
        return all(
            (c := closes.get(start)) is not None and c.seconds >= s and c.credited
            for start, s in seconds.items()
        )

    async def close_bucket(
        self, start: dt.datetime, revision: int, seconds: int, now: dt.datetime
    ) -> None:
        stores = self._stores
        rates = rates_of(self._config())
        end = start + dt.timedelta(seconds=self._config().rates.bucket_seconds)
        lines = await self._scored_lines(start, end)
        uptime = rules.uptime_payouts(lines, rates)
        points = rules.points_by_user(uptime)
        chains = await stores.referrals.referrers_of(list(points))
        referral = rules.referral_payouts(
            points,
            {u: [(r.level, r.referrer_id) for r in links] for u, links in chains.items()},
            rates,
        )
        # Milestones: referees not yet qualified whose all-time uptime reached the hours.
        level1 = {
            u: r.referrer_id
            for u, links in chains.items()
            for r in links
            if r.level == 1 and r.status is not ReferralStatus.QUALIFIED
        }
        reached: list[str] = []
        if level1:
            totals = await stores.uptime.uptime_by_user(list(level1), until=end)
            reached = [u for u, s in totals.items() if s.seconds >= rates.milestone_seconds]
        milestones = [
            KeyedPayout(key=key, payout=payout)
            for key, payout in rules.milestone_payouts(reached, level1, rates)
            if await stores.earnings.find_earning(key) is None
        ]
        paid = await stores.payouts.paid_slots(start)
        owed = rules.top_up([*uptime, *referral], paid)
        keyed = [KeyedPayout(key=rules.bucket_key(start, revision, p.slot), payout=p) for p in owed]
        keyed.extend(milestones)
        close = BucketClose(bucket_start=start, revision=revision, seconds=seconds, closed_at=now)
        await stores.payouts.record_payouts(close, keyed, accrued_at=start, created_at=now)
        self.closed += 1
        await self._step("recorded", start)
        qualified = [m.payout.user_id for m in milestones if m.payout.referee_id is None]
        await self._statuses(points, chains, qualified)
        await self._step("statuses", start)
        rows = [(k.key, k.payout.user_id, k.payout.amount, k.payout.source.value) for k in keyed]
        await self._credit(rows, start, now)
        await self._step("ledger", start)
        await stores.payouts.mark_credited(start, revision)
        await self._step("credited", start)
        log.info(
            "bucket closed",
            bucket=start.isoformat(),
            revision=revision,
            entries=len(keyed),
            amount=sum(k.payout.amount for k in keyed),
        )

    async def _scored_lines(self, start: dt.datetime, end: dt.datetime) -> list[rules.UptimeLine]:
        rows = await self._stores.payouts.bucket_lines(start)
        unscored = {line.device_id for line, has_score in rows if not has_score}
        scores = await self._scores.score_devices(unscored, end) if unscored else {}
        lines = []
        for line, has_score in rows:
            if not has_score:
                score = scores.get(line.device_id)
                # A device removed before it was ever scored: scored as a full device would be.
                line = rules.UptimeLine(
                    device_id=line.device_id,
                    user_id=line.user_id,
                    ip=line.ip,
                    seconds=line.seconds,
                    device_type=line.device_type,
                    score=100 if score is None else score.value,
                )
            lines.append(line)
        return lines

    async def _statuses(
        self,
        users: Iterable[str],
        chains: Mapping[str, Sequence[Referral]],
        qualified: Sequence[str],
    ) -> None:
        """Referees with uptime become active (once), those past the milestone qualified."""
        referrals = self._stores.referrals
        for user in users:
            if any(r.status is ReferralStatus.PENDING for r in chains.get(user, ())):
                await referrals.set_referral_status(user, ReferralStatus.ACTIVE)
        for user in qualified:
            await referrals.set_referral_status(user, ReferralStatus.QUALIFIED)

    async def _finish(self, close: BucketClose) -> None:
        """A close written before a crash: statuses and ledger again, then credited."""
        entries = await self._stores.payouts.revision_entries(close.bucket_start, close.revision)
        uptime_users = {e.user_id for e in entries if e.source is EarningSource.UPTIME}
        chains = await self._stores.referrals.referrers_of(list(uptime_users))
        qualified = [
            e.user_id for e in entries if e.source is EarningSource.MILESTONE and not e.referee_id
        ]
        await self._statuses(uptime_users, chains, qualified)
        await self._credit(_credit_rows(entries), close.bucket_start, self._clock())
        await self._stores.payouts.mark_credited(close.bucket_start, close.revision)

    async def _credit(
        self,
        rows: Iterable[tuple[str, str, int, str]],
        accrued_at: dt.datetime,
        now: dt.datetime,
    ) -> None:
        epoch = self._epochs.number_at(accrued_at)
        credits = [
            Credit(key=key, user_id=user, amount=amount, epoch=epoch, source=source)
            for key, user, amount, source in rows
            if amount > 0
        ]
        for i in range(0, len(credits), LEDGER_CHUNK):
            chunk = credits[i : i + LEDGER_CHUNK]
            try:
                await self._ledger.record(chunk)
            except AlreadySettled:
                # Late uptime of an epoch already settled is paid in the current epoch.
                current = self._epochs.number_at(now)
                await self._ledger.record([_with_epoch(c, current) for c in chunk])

    async def _step(self, name: str, bucket: dt.datetime) -> None:
        if self.step_hook is not None:
            await self.step_hook(name, bucket)


def _credit_rows(entries: Iterable[EarningEntry]) -> Iterable[tuple[str, str, int, str]]:
    return ((e.idempotency_key, e.user_id, e.amount, e.source.value) for e in entries)


def _with_epoch(credit: Credit, epoch: int) -> Credit:
    return Credit(
        key=credit.key,
        user_id=credit.user_id,
        amount=credit.amount,
        epoch=epoch,
        source=credit.source,
        created=credit.created,
    )


def _bucket_floor(at: dt.datetime, length: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + (at - epoch) // length * length
