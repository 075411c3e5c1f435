"""Building the engine's services over a storage, with a memory ledger and a manual clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from grass.config import Config
from grass.ledger.abc import Ledger
from grass.ledger.memory import open_memory_ledger
from grass.services.closer import BucketCloser, CreditEvents, StepHook
from grass.services.epochs import EpochService
from grass.services.scores import ScoreService
from grass.storage.abc import Storage
from grass.storage.memory.payouts import MemoryJobLock
from grass.storage.payouts import JobLock
from grass.storage.postgres.job_lock import PgJobLock
from grass.storage.postgres.storage import PostgresStorage


def engine_config(**rates: Any) -> Config:
    base = Config()
    return attrs.evolve(base, rates=attrs.evolve(base.rates, **rates))


@attrs.define
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


@attrs.define
class Engine:
    closer: BucketCloser
    scores: ScoreService
    epochs: EpochService
    ledger: Ledger
    clock: Clock


_MEMORY_LOCKS: dict[int, MemoryJobLock] = {}


def job_lock(storage: Storage) -> JobLock:
    """A new instance's lock: its own connection on PostgreSQL; in memory, the process's one."""
    if isinstance(storage, PostgresStorage):
        return PgJobLock(storage.db)
    return _MEMORY_LOCKS.setdefault(id(storage), MemoryJobLock())


def build(
    storage: Storage,
    ledger: Ledger,
    config: Config,
    clock: Clock,
    *,
    step_hook: StepHook | None = None,
    events: CreditEvents | None = None,
) -> Engine:
    scores = ScoreService(storage, lambda: config, clock)
    epochs = EpochService(storage, ledger, lambda: config)
    closer = BucketCloser(
        storage,
        ledger,
        scores,
        epochs,
        job_lock(storage),
        lambda: config,
        clock,
        step_hook=step_hook,
        events=events,
    )
    return Engine(closer, scores, epochs, ledger, clock)


@asynccontextmanager
async def engine(
    storage: Storage, config: Config, now: dt.datetime, **options: Any
) -> AsyncIterator[Engine]:
    async with open_memory_ledger() as ledger:
        yield build(storage, ledger, config, Clock(now), **options)
