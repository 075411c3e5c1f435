"""The bucket closer (architecture §5): pays each closed uptime bucket once, then the ledger.

One pass (:meth:`BucketCloser.tick`), on one instance at a time (the job lock):

1. closes whose entries did not all reach the ledger (a crash after step 3 below) are handed
   to the ledger again;
2. every bucket that ended at least ``closer.delay`` ago and holds uptime is closed, oldest
   first; a bucket already closed whose uptime grew since (late uptime) gets a correction:
   a new *revision* paying only what is still owed (:func:`grass.domain.payouts.top_up`), as
   long as the bucket started less than ``closer.correction_window`` ago (the last two
   buckets are looked at every tick, each older one about once per bucket length);
3. per bucket: price its lines (a line paid before keeps the score and device type it was
   first paid at; one never paid whose device is gone is priced at score 0), compute the
   targets (uptime shares, referral credits, milestone bonuses), subtract what the bucket's
   entries already paid, write the rest, the lines priced now and the close record in one
   atomic call (``record_payouts``), update referral statuses, credit the ledger, mark the
   close credited;
4. uptime found in buckets past the correction window that was never paid is reported (a
   warning and ``grass_closer_late_uptime_unpaid_seconds_total``), once;
5. epochs whose end is ``closer.delay`` past and whose buckets are all closed are closed
   (totals frozen) and settled on the ledger; a bucket past the window counts as closed (its
   unpaid uptime is only reported, step 4), so it never holds an epoch open.

Crash safety: step 3's write is atomic and its keys name bucket, revision and recipient, so a
re-run after a crash before it pays everything, and after it pays nothing again (the targets
minus what was paid is zero) and only finishes the ledger hand-over. The hand-over puts the
credits of one revision in one ledger epoch chosen from state that cannot change until the
revision is credited (:meth:`EpochService.credit_epoch`), so a re-run sends the same credits.
``step_hook`` lets tests stop the closer between any two steps (:data:`STEPS`,
:data:`CHUNK_STEP`, :data:`FINISH_STEPS`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import trio

from grass import logs
from grass.config import Config
from grass.domain import closing
from grass.domain import payouts as rules
from grass.domain.earnings import EarningEntry, EarningSource
from grass.domain.referrals import ReferralStatus
from grass.ledger.abc import Credit, Ledger
from grass.metrics import Metrics
from grass.services.bucket_inputs import read_bucket_inputs, unpaid_milestones
from grass.services.epochs import EpochService
from grass.services.scores import ScoreService
from grass.storage.abc import ReferralStore
from grass.storage.earnings import EarningsStore
from grass.storage.payouts import BucketClose, ChainLink, JobLock, KeyedPayout, PayoutStore

log = logs.get(__name__)

JOB = "bucket-closer"
#: Where ``step_hook`` is called while a revision is closed: after it is recorded, after the
#: referral statuses, after the ledger hand-over, after it is marked credited;
STEPS = ("recorded", "statuses", "ledger", "credited")
#: after each ledger chunk (both while closing and in a re-run);
CHUNK_STEP = "ledger-chunk"
#: and in the re-run of an uncredited close, after its statuses and after it is credited.
FINISH_STEPS = ("finish-statuses", "finish-credited")
LEDGER_CHUNK = 10_000

StepHook = Callable[[str, dt.datetime], Awaitable[None]]


class CloserStores(Protocol):
    @property
    def earnings(self) -> EarningsStore: ...
    @property
    def referrals(self) -> ReferralStore: ...
    @property
    def payouts(self) -> PayoutStore: ...


class CreditEvents(Protocol):
    async def earnings_credited(self, epoch: int, amounts: Mapping[str, int]) -> None: ...


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
        metrics: Metrics | None = None,
        events: CreditEvents | None = None,
        step_hook: StepHook | None = None,
        ledger_chunk: int = LEDGER_CHUNK,
    ) -> None:
        self._stores = stores
        self._ledger = ledger
        self._scores = scores
        self._epochs = epochs
        self._lock = lock
        self._config = config
        self._clock = clock
        self._metrics = metrics
        #: Told what each user was credited (the live dashboard: grass.services.live).
        self._events = events
        self.step_hook = step_hook
        self._ledger_chunk = ledger_chunk
        self.closed = 0  # revisions written by this process
        #: Where the look at the older part of the window resumes (None: the closer just
        #: started and looks at all of it).
        self._sweep: dt.datetime | None = None
        self._band: dt.datetime | None = None  # the same, for the band past the window
        self._next_drop: dt.datetime | None = None
        #: Unpaid seconds already reported per bucket past the window (reported once).
        self._reported: dict[dt.datetime, int] = {}

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
            await self._past_window(now)
            window_start, _ = self._window(now)

            async def all_closed(since: dt.datetime, until: dt.datetime) -> bool:
                return await self._all_closed(since, until, window_start=window_start)

            await self._epochs.close_due(now, all_closed)
            return True

    def _window(self, now: dt.datetime) -> closing.Range:
        closer = self._config().closer
        return closing.window(
            now,
            length=self._bucket_length(),
            delay=dt.timedelta(seconds=closer.delay),
            correction=dt.timedelta(seconds=closer.correction_window),
        )

    def _bucket_length(self) -> dt.timedelta:
        return dt.timedelta(seconds=self._config().rates.bucket_seconds)

    async def _due(self, now: dt.datetime) -> list[tuple[dt.datetime, int, int]]:
        """Buckets to close or correct, among those this tick looks at (grass.domain.closing:
        the last two, a slice of the older ones in turn; all of them after a start)."""
        ranges, self._sweep = closing.sweep(
            self._window(now),
            self._sweep,
            length=self._bucket_length(),
            interval=dt.timedelta(seconds=self._config().closer.interval),
        )
        unpaid: dict[dt.datetime, tuple[int, BucketClose | None]] = {}
        for first, last in ranges:
            unpaid |= await self._unpaid(first, last)
        return [
            (start, 0 if close is None else close.revision + 1, seconds)
            for start, (seconds, close) in sorted(unpaid.items())
        ]

    async def _unpaid(
        self, since: dt.datetime, until: dt.datetime
    ) -> dict[dt.datetime, tuple[int, BucketClose | None]]:
        """Buckets in [since, until) holding more uptime than their close paid for."""
        payouts = self._stores.payouts
        seconds = await payouts.bucket_seconds(since=since, until=until)
        closes = {c.bucket_start: c for c in await payouts.list_closes(since=since, until=until)}
        out = {}
        for start, total in seconds.items():
            close = closes.get(start)
            if close is None or total > close.seconds:
                out[start] = (total, close)
        return out

    async def _past_window(self, now: dt.datetime) -> None:
        """Report uptime that landed in buckets past the window (one more window back, swept
        like the window, never all at once), and forget the prices of those buckets' lines,
        once per bucket length: they are never paid again."""
        since, _ = self._window(now)
        length = self._bucket_length()
        earliest = since - dt.timedelta(seconds=self._config().closer.correction_window)
        ranges, self._band = closing.sweep(
            (earliest, since),
            self._band or earliest,
            length=length,
            interval=dt.timedelta(seconds=self._config().closer.interval),
        )
        for first, last in ranges:
            for start, (seconds, close) in sorted((await self._unpaid(first, last)).items()):
                self._report(start, seconds - (0 if close is None else close.seconds))
        self._reported = {b: s for b, s in self._reported.items() if b >= earliest}
        if self._next_drop is None or now >= self._next_drop:
            self._next_drop = now + length
            await self._stores.payouts.drop_frozen_lines(before=since)

    def _report(self, bucket: dt.datetime, missed: int) -> None:
        new = missed - self._reported.get(bucket, 0)
        if new > 0:
            log.warning(
                "late uptime past closer.correction_window is not paid",
                bucket=bucket.isoformat(),
                seconds=new,
                unpaid_seconds=missed,
            )
            if self._metrics is not None:
                self._metrics.closer_late_unpaid.inc(new)
            self._reported[bucket] = missed

    async def _all_closed(
        self, since: dt.datetime, until: dt.datetime, *, window_start: dt.datetime
    ) -> bool:
        """Whether the buckets in [since, until) are all paid as far as they ever will be:
        every close credited, and every bucket still in the window closed for all its seconds.

        A bucket that left the window (``window_start``: it started before it) is never closed
        or corrected again, so its unpaid uptime (late, or written while the closer was down
        longer than the window) is only reported (:meth:`_past_window`) and cannot hold its
        epoch, nor the later ones (they close in order), open for ever."""
        seconds = await self._stores.payouts.bucket_seconds(since=since, until=until)
        closes = {
            c.bucket_start: c
            for c in await self._stores.payouts.list_closes(since=since, until=until)
        }
        if not all(c.credited for c in closes.values()):
            return False
        return all(
            (c := closes.get(start)) is not None and c.seconds >= s
            for start, s in seconds.items()
            if start >= window_start
        )

    async def close_bucket(
        self, start: dt.datetime, revision: int, seconds: int, now: dt.datetime
    ) -> None:
        stores = self._stores
        rates = rules.rates_of(self._config().rates)
        end = start + self._bucket_length()
        (lines, priced), chains, reached = await read_bucket_inputs(
            stores.payouts, self._scores, start, end, rates
        )
        uptime = rules.uptime_payouts(lines, rates)
        paid = await stores.payouts.paid_slots(start)
        owed = rules.top_up(uptime, paid)
        points = rules.uptime_points(uptime, paid, owed)
        referral = rules.referral_payouts(
            points,
            {u: [(r.level, r.referrer_id) for r in links] for u, links in chains.items()},
            rates,
        )
        owed.extend(rules.top_up(referral, paid))
        milestones = await unpaid_milestones(stores.earnings, chains, reached, rates)
        prefix = rules.bucket_key_prefix(start, revision)
        keyed = [KeyedPayout(key=prefix + p.slot, payout=p) for p in owed]
        keyed.extend(milestones)
        close = BucketClose(bucket_start=start, revision=revision, seconds=seconds, closed_at=now)
        await self._epochs.ensure(self._epochs.number_at(start))
        await stores.payouts.record_payouts(close, keyed, frozen=priced, accrued_at=start)
        self.closed += 1
        if self._metrics is not None:
            self._metrics.closer_revisions.labels("correction" if revision else "first").inc()
        await self._step("recorded", start)
        qualified = [m.payout.user_id for m in milestones if m.payout.referee_id is None]
        await self._statuses(points, chains, qualified)
        await self._step("statuses", start)
        rows = [(k.key, k.payout.user_id, k.payout.amount, k.payout.source.value) for k in keyed]
        epoch = await self._credit(rows, close)
        await self._step("ledger", start)
        await stores.payouts.mark_credited(start, revision)
        await self._step("credited", start)
        if self._events is not None:
            # At most once: a re-run after a crash (_finish) announces nothing; dashboards
            # read their totals again when they reconnect.
            amounts: dict[str, int] = {}
            for _, user, amount, _ in rows:
                amounts[user] = amounts.get(user, 0) + amount
            await self._events.earnings_credited(epoch, amounts)
        log.info(
            "bucket closed",
            bucket=start.isoformat(),
            revision=revision,
            entries=len(keyed),
            amount=sum(k.payout.amount for k in keyed),
        )

    async def _statuses(
        self,
        users: Iterable[str],
        chains: Mapping[str, Sequence[ChainLink]],
        qualified: Sequence[str],
    ) -> None:
        """Referees with uptime become active (once), those past the milestone qualified."""
        referrals = self._stores.referrals
        pending = [
            user
            for user in users
            if any(r.status is ReferralStatus.PENDING for r in chains.get(user, ()))
        ]
        if pending:
            await referrals.promote_referees(pending, ReferralStatus.ACTIVE)
        if qualified:
            await referrals.promote_referees(qualified, ReferralStatus.QUALIFIED)

    async def _finish(self, close: BucketClose) -> None:
        """A close written before a crash: statuses and ledger again, then credited."""
        entries = await self._stores.payouts.revision_entries(close)
        uptime_users = {e.user_id for e in entries if e.source is EarningSource.UPTIME}
        chains = await self._stores.payouts.referral_chains(list(uptime_users))
        qualified = [
            e.user_id for e in entries if e.source is EarningSource.MILESTONE and not e.referee_id
        ]
        await self._statuses(uptime_users, chains, qualified)
        await self._step("finish-statuses", close.bucket_start)
        await self._credit(_credit_rows(entries), close)
        await self._stores.payouts.mark_credited(close.bucket_start, close.revision)
        await self._step("finish-credited", close.bucket_start)

    async def _credit(self, rows: Iterable[tuple[str, str, int, str]], close: BucketClose) -> int:
        """Hand the rows to the ledger; returns the epoch they were credited in."""
        # Neither the bucket's epoch nor the close time changes until the revision is credited
        # (epochs close at the end of a tick, after every uncredited close is credited, and
        # not while a close in them is uncredited): a re-run sends exactly the same credits.
        epoch = await self._epochs.credit_epoch(close.bucket_start, close.closed_at)
        now = self._clock()  # one instant for the batch (a clock call per credit costs 0.1 s)
        credits = [
            Credit(key=key, user_id=user, amount=amount, epoch=epoch, source=source, created=now)
            for key, user, amount, source in rows
            if amount > 0
        ]
        for i in range(0, len(credits), self._ledger_chunk):
            await self._ledger.record(credits[i : i + self._ledger_chunk])
            await self._step(CHUNK_STEP, close.bucket_start)
        return epoch

    async def _step(self, name: str, bucket: dt.datetime) -> None:
        if self.step_hook is not None:
            await self.step_hook(name, bucket)


def _credit_rows(entries: Iterable[EarningEntry]) -> Iterable[tuple[str, str, int, str]]:
    return ((e.idempotency_key, e.user_id, e.amount, e.source.value) for e in entries)
