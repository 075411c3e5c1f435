"""The advisory-lock job lock on PostgreSQL (grass.storage.payouts.JobLock): one leader job,
such as the bucket closer, across every instance on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from grass.postgres.pool import Database

__all__ = ["PgJobLock"]


class PgJobLock:
    """A session-level advisory lock per job, held on its own connection while the job runs.

    The lock id is derived from the schema and the job name (``hashtextextended``), so two
    deployments (or two test schemas) on one server never contend for each other's jobs.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        async with self._db.connection() as conn:
            lock = "hashtextextended(current_schema() || ':' || $1, 0)"
            held = await conn.fetchval(f"SELECT pg_try_advisory_lock({lock})", name)
            try:
                yield bool(held)
            finally:
                if held:
                    await conn.fetchval(f"SELECT pg_advisory_unlock({lock})", name)
